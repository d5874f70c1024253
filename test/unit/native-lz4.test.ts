// Our lz4 frames are byte-identical to python-lz4's
// lz4.frame.compress(data, content_checksum=True, block_checksum=True, compression_level=N)
// (Debian python3-lz4 over the same liblz4) for every level 1..16, and decode with checksums.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { native } from "../../src/native/index.js";
import { Lz4FrameEncoder } from "../../src/format/lz4.js";
import { pattern } from "../helpers/streams.js";
import { tempDir } from "../helpers/tmp.js";

const PY = "/usr/bin/python3";

function inputs(): Record<string, Buffer> {
  const text = Buffer.from("virtnbdbackup lz4 frame compatibility line 0123456789\n".repeat(4000));
  return {
    tiny: Buffer.from("virtnbd example!"), // one block: independent mode
    random: pattern(300_000, 5), // incompressible, several linked blocks
    mixed: Buffer.concat([Buffer.alloc(100_000), text, pattern(70_000, 9)]),
  };
}

test("lz4 frames are byte-identical to python-lz4 for levels 1..16", async (t) => {
  const dir = await tempDir(t);
  const files = Object.entries(inputs()).map(([name, data]) => {
    const path = join(dir, name);
    writeFileSync(path, data);
    return { name, path, data };
  });
  // One python run produces every reference frame: <file>.<level>.lz4
  execFileSync(PY, [
    "-c",
    "import sys, lz4.frame\n" +
      "for path in sys.argv[1:]:\n" +
      "    data = open(path, 'rb').read()\n" +
      "    for level in range(1, 17):\n" +
      "        open(f'{path}.{level}.lz4', 'wb').write(lz4.frame.compress(data, content_checksum=True, block_checksum=True, compression_level=level))\n",
    ...files.map((f) => f.path),
  ]);
  const { readFileSync } = await import("node:fs");
  for (const f of files) {
    const out = Buffer.alloc(native.lz4CompressBound(f.data.length));
    for (let level = 1; level <= 16; level++) {
      const expected = readFileSync(`${f.path}.${level}.lz4`);
      const n = level % 2 ? native.lz4Compress(f.data, out, level) : await native.lz4CompressAsync(f.data, out, level);
      assert.ok(out.subarray(0, n).equals(expected), `${f.name} level ${level}: ${n} bytes vs python ${expected.length}`);
      const back = Buffer.alloc(f.data.length);
      assert.equal(await native.lz4DecompressAsync(expected, back), f.data.length);
      assert.ok(back.equals(f.data));
    }
  }
});

test("the streaming encoder with a single part equals the one-shot frame; several parts decode", async () => {
  const data = inputs()["mixed"]!;
  const oneShot = Buffer.alloc(native.lz4CompressBound(data.length));
  const n = native.lz4Compress(data, oneShot, 2);
  for (const parts of [1, 3]) {
    const enc = new Lz4FrameEncoder();
    const chunks: Buffer[] = [];
    const hdr = Buffer.alloc(64);
    chunks.push(Buffer.from(hdr.subarray(0, enc.begin(hdr, data.length, 2))));
    const step = Math.ceil(data.length / parts / 65536) * 65536;
    for (let at = 0; at < data.length; at += step) {
      const part = data.subarray(at, Math.min(data.length, at + step));
      const dst = Buffer.alloc(enc.bound(part.length));
      chunks.push(Buffer.from(dst.subarray(0, await enc.update(part, dst))));
    }
    const tail = Buffer.alloc(enc.bound(0));
    chunks.push(Buffer.from(tail.subarray(0, await enc.end(tail))));
    const frame = Buffer.concat(chunks);
    if (parts === 1) assert.ok(frame.equals(oneShot.subarray(0, n)));
    const back = Buffer.alloc(data.length);
    assert.equal(native.lz4Decompress(frame, back), data.length);
    assert.ok(back.equals(data));
  }
});

test("corrupt, truncated and oversized frames are refused", () => {
  const data = inputs()["random"]!;
  const frame = Buffer.alloc(native.lz4CompressBound(data.length));
  const n = native.lz4Compress(data, frame, 2);
  const out = Buffer.alloc(data.length);
  const flipped = Buffer.from(frame.subarray(0, n));
  flipped[100]! ^= 1;
  assert.throws(() => native.lz4Decompress(flipped, out), /lz4 frame is corrupt/);
  assert.throws(() => native.lz4Decompress(frame.subarray(0, n - 10), out), /truncated|corrupt/);
  assert.throws(() => native.lz4Decompress(frame.subarray(0, n), Buffer.alloc(1000)), /more bytes than expected/);
  assert.throws(() => native.lz4Decompress(Buffer.concat([frame.subarray(0, n), Buffer.from("xx")]), out), /unexpected bytes/);
});
