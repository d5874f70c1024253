/** AdlerTap: the whole file's Adler-32 from the reads made through it, plus what nobody read. */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { AdlerTap } from "../../src/format/adler-tap.js";
import { Adler32 } from "../../src/format/checksum.js";
import type { RandomAccessSource } from "../../src/format/source.js";
import { MemorySource } from "../helpers/memory-streams.js";

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
