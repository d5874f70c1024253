/** AdlerTap: the whole file's Adler-32 from the reads made through it, plus what nobody read. */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it, test } from "node:test";
import { AdlerTap } from "../../src/format/adler-tap.js";
import { Adler32, adler32Range } from "../../src/format/checksum.js";
import { openFileSource, ShortReadError, type RandomAccessSource } from "../../src/format/source.js";
import { native } from "../../src/native/index.js";
import { MemorySource } from "../helpers/memory-streams.js";
import { tempDir } from "../helpers/tmp.js";

/** Counts the bytes read from the file underneath. */
class CountingSource extends MemorySource {
  bytesRead = 0;
  override async read(buf: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    const n = await super.read(buf, offset, length, position);
    this.bytesRead += n;
    return n;
  }
}

async function readVia(src: RandomAccessSource, start: number, length: number): Promise<Buffer> {
  const b = Buffer.alloc(length);
  await src.read(b, 0, length, start);
  return b;
}

describe("AdlerTap", () => {
  const data = randomBytes(3 * 1024 * 1024 + 123);
  const whole = new Adler32().update(data).value >>> 0;

  it("nothing read through it: the whole file is read at the end", async () => {
    const under = new CountingSource(data);
    assert.equal(await new AdlerTap(under).finish(), whole);
    assert.equal(under.bytesRead, data.length);
  });

  it("sequential reads of everything: no byte is read twice", async () => {
    const under = new CountingSource(data);
    const tap = new AdlerTap(under);
    for (let at = 0; at < data.length; at += 65536) await readVia(tap, at, Math.min(65536, data.length - at));
    const before = under.bytesRead;
    assert.equal(await tap.finish(), whole);
    assert.equal(under.bytesRead, before);
  });

  it("random, repeated, overlapping and out-of-order reads with gaps: still the whole file's checksum", async () => {
    for (let seed = 1; seed <= 25; seed++) {
      const under = new CountingSource(data);
      const tap = new AdlerTap(under);
      let x = seed;
      const next = (n: number) => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) % n);
      for (let i = 0; i < 60; i++) {
        const start = next(data.length);
        await readVia(tap, start, 1 + next(Math.min(200_000, data.length - start)));
        if (i % 7 === 0) await readVia(tap, start, 1 + next(Math.min(1000, data.length - start))); // again, shorter
      }
      assert.equal(await tap.finish(), whole, `seed ${seed}`);
    }
  });

  it("a changed byte anywhere (read or not) changes the result", async () => {
    for (const pos of [0, 70_000, data.length - 1]) {
      const damaged = Buffer.from(data);
      damaged[pos]! ^= 0x40;
      const tap = new AdlerTap(new MemorySource(damaged));
      await readVia(tap, 65536, 65536); // covers 70_000
      assert.notEqual(await tap.finish(), whole);
    }
  });
});

test("a plain file's ranges are summed in place (adler32FileAsync: mapped 4 MiB at a time): the same sums as over a buffer; a short file is an error", async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, "data");
  const data = randomBytes((9 << 20) + 3 * 4096 + 77); // past two mapping windows, not page-sized
  await writeFile(path, data);
  const source = await openFileSource(path);
  t.after(() => source.close());
  assert.ok(source.adler32, "plain files sum in place");
  for (const [start, end] of [[0, data.length], [1, 4097], [4095, (4 << 20) + 5], [123456, 123456], [(8 << 20) - 1, data.length]] as const) {
    assert.equal(await adler32Range(source, start, end, 1), native.adler32(1, data, start, end - start) >>> 0, `[${start}, ${end})`);
  }
  // Continuing a sum, as AdlerTap.finish does.
  const head = native.adler32(1, data, 0, 1000);
  assert.equal(await adler32Range(source, 1000, 5000, head), native.adler32(1, data, 0, 5000) >>> 0);
  await truncate(path, 1000);
  await assert.rejects(adler32Range(source, 0, 5000), (e: Error) => e instanceof ShortReadError && e.message.includes(path));
});
