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
    // Many blocks, a short last one: every way a block ends (stored, compressed, zeroes).
    large: Buffer.concat([pattern(1_500_000, 3), Buffer.alloc(700_000), text, pattern(1_000_001, 4), text.subarray(0, 77_777)]),
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

test("the streaming encoder's frames equal python-lz4's LZ4FrameCompressor fed the same parts", async (t) => {
  const dir = await tempDir(t);
  const data = inputs()["large"]!;
  const path = join(dir, "large");
  writeFileSync(path, data);
  // Parts as the lz4 lanes give them (64 KiB multiples), and odd ones that leave partial blocks.
  const cuts = [[1 << 20, 2 << 20, 3 << 20], [100_000, 1_234_567, 3_000_000]];
  for (const level of [2, 9]) {
    for (const cut of cuts) {
      const ref = execFileSync(PY, [
        "-c",
        "import sys, lz4.frame\n" +
          "data = open(sys.argv[1], 'rb').read()\n" +
          "cuts = [0] + [int(x) for x in sys.argv[3:]] + [len(data)]\n" +
          "c = lz4.frame.LZ4FrameCompressor(compression_level=int(sys.argv[2]), content_checksum=True, block_checksum=True)\n" +
          "out = c.begin(len(data))\n" +
          "for a, b in zip(cuts, cuts[1:]): out += c.compress(data[a:b])\n" +
          "sys.stdout.buffer.write(out + c.flush())\n",
        path,
        String(level),
        ...cut.map(String),
      ], { maxBuffer: 64 << 20 });
      const enc = new Lz4FrameEncoder();
      const hdr = Buffer.alloc(32);
      const chunks = [Buffer.from(hdr.subarray(0, enc.begin(hdr, data.length, level)))];
      const bounds = [0, ...cut, data.length];
      for (let i = 0; i + 1 < bounds.length; i++) {
        const part = data.subarray(bounds[i], bounds[i + 1]);
        const dst = Buffer.alloc(enc.bound(part.length));
        chunks.push(Buffer.from(dst.subarray(0, await enc.update(part, dst))));
      }
      const tail = Buffer.alloc(enc.bound(0));
      chunks.push(Buffer.from(tail.subarray(0, await enc.end(tail))));
      assert.ok(Buffer.concat(chunks).equals(ref), `level ${level}, parts at ${cut.join(",")}`);
    }
  }
});

test("frames with every header option python-lz4 writes decode; a wrong content checksum is refused", async (t) => {
  const dir = await tempDir(t);
  const data = inputs()["large"]!;
  const path = join(dir, "large");
  writeFileSync(path, data);
  // block size id, linked, block checksum, content checksum, content size
  const variants = [];
  for (const blockSize of [4, 5, 7]) for (const linked of [0, 1]) for (const sums of [0, 1, 2, 3]) for (const size of [0, 1]) variants.push([blockSize, linked, sums & 1, sums >> 1, size]);
  execFileSync(PY, [
    "-c",
    "import sys, lz4.frame\n" +
      "data = open(sys.argv[1], 'rb').read()\n" +
      "for i, v in enumerate(sys.argv[2:]):\n" +
      "    b, l, bs, cs, st = map(int, v.split(','))\n" +
      "    open(f'{sys.argv[1]}.{i}', 'wb').write(lz4.frame.compress(data, block_size=b, block_linked=bool(l), block_checksum=bool(bs), content_checksum=bool(cs), store_size=bool(st), compression_level=2))\n",
    path,
    ...variants.map((v) => v.join(",")),
  ]);
  const { readFileSync } = await import("node:fs");
  const out = Buffer.alloc(data.length);
  for (const [i, v] of variants.entries()) {
    const frame = readFileSync(`${path}.${i}`);
    out.fill(0xee);
    assert.equal(await native.lz4DecompressAsync(frame, out), data.length, `variant ${v.join(",")}`);
    assert.ok(out.equals(data), `variant ${v.join(",")} decodes to the input`);
    if (v[3]) {
      const bad = Buffer.from(frame);
      bad[bad.length - 1]! ^= 0x10; // the content checksum
      assert.throws(() => native.lz4Decompress(bad, out), /lz4 frame is corrupt/, `variant ${v.join(",")}`);
    }
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
