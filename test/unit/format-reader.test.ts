import { test } from "node:test";
import assert from "node:assert/strict";
import { StreamReader, type BodyFrame } from "../../src/format/reader.js";
import { StreamFormatError } from "../../src/format/errors.js";
import { BufferPool } from "../../src/util/buffer-pool.js";
import { MemorySource } from "../helpers/memory-streams.js";
import { buildStream, pattern, type TestExtent } from "../helpers/streams.js";

/** Decodes a whole stream into a disk image the way restore would. */
async function decode(bytes: Buffer, poolSize = 1 << 20): Promise<{ disk: Buffer; frames: BodyFrame[] }> {
  const reader = await StreamReader.open(new MemorySource(bytes));
  const disk = Buffer.alloc(reader.meta.virtualSize);
  const pool = BufferPool.fixed(poolSize, 2);
  const frames: BodyFrame[] = [];
  for await (const f of reader.frames()) {
    frames.push(f);
    if (f.kind !== "data") continue;
    for await (const p of reader.pieces(f, pool)) {
      p.data.copy(disk, p.offset);
      if (p.buffer) pool.release(p.buffer);
    }
  }
  assert.equal(pool.bytesInUse, 0);
  return { disk, frames };
}

const SIZE = 4 * 1024 * 1024;
const extents: TestExtent[] = [
  { start: 0, data: pattern(65536, 1) },
  { start: 65536, zero: 65536 },
  { start: 131072, data: Buffer.alloc(200000, 7) },
  { start: 331072, zero: SIZE - 331072 - 300000 },
  { start: SIZE - 300000, data: pattern(300000, 9) },
];

function expectedDisk(): Buffer {
  const d = Buffer.alloc(SIZE);
  for (const e of extents) if ("data" in e) e.data.copy(d, e.start);
  return d;
}

for (const level of [undefined, 1, 2, 9]) {
  test(`round trip ${level === undefined ? "uncompressed" : `lz4 level ${level}`}`, async () => {
    const bytes = await buildStream(extents, { virtualSize: SIZE, compressLevel: level, chunkSize: 100000 });
    const { disk, frames } = await decode(bytes, 64 * 1024);
    assert.deepEqual(disk, expectedDisk());
    assert.deepEqual(frames.map((f) => f.kind), ["data", "zero", "data", "zero", "data"]);
  });
}

test("metadata: old versions are normalized", async () => {
  const bytes = await buildStream([], { virtualSize: 1024 });
  const text = bytes.toString("latin1");
  const json = text.slice(40, text.indexOf("\r\n", 40));
  const legacy = JSON.stringify({ ...JSON.parse(json), streamVersion: undefined, "stream-version": 1, diskFormat: undefined, checkpointName: 1700000000, parentCheckpoint: false });
  const head = `meta 0000000000000000 ${legacy.length.toString(16).padStart(16, "0")}\r\n`;
  const v1 = Buffer.concat([Buffer.from(head + legacy + "\r\n"), bytes.subarray(40 + json.length + 2)]);
  const r = await StreamReader.open(new MemorySource(v1));
  assert.equal(r.meta.streamVersion, 1);
  assert.equal(r.meta.diskFormat, "qcow2");
  assert.equal(r.meta.checkpointName, "1700000000");
  assert.equal(r.meta.parentCheckpoint, "");
  assert.equal(r.compressed, false);
});

test("upper-case hex in headers is accepted", async () => {
  const bytes = await buildStream([{ start: 0xabc00, data: Buffer.alloc(16, 1) }], { virtualSize: 0x100000 });
  const upper = Buffer.from(bytes.toString("latin1").replace("data 00000000000abc00", "data 00000000000ABC00"), "latin1");
  const { disk } = await decode(upper);
  assert.equal(disk[0xabc00], 1);
});

async function failure(bytes: Buffer): Promise<StreamFormatError> {
  try {
    await decode(bytes);
  } catch (e) {
    assert.ok(e instanceof StreamFormatError, `expected StreamFormatError, got ${(e as Error).stack}`);
    assert.match(e.message, /^memory\.data: at byte \d+: /);
    return e;
  }
  assert.fail("stream was accepted");
}

test("bad input gives one clear error naming the file and byte offset", async () => {
  const plain = await buildStream(extents, { virtualSize: SIZE });
  const packed = await buildStream(extents, { virtualSize: SIZE, compressLevel: 2 });
  const at = (b: Buffer, s: string) => b.indexOf(s);

  assert.match((await failure(plain.subarray(0, plain.length - 20))).message, /stop frame|truncated/);
  assert.match((await failure(plain.subarray(0, 30))).message, /too short/);
  const garbage = Buffer.from(plain);
  garbage.write("data zzzzzzzzzzzzzzzz", at(plain, "data 0000"), "latin1");
  assert.match((await failure(garbage)).message, /not hex/);
  const badKind = Buffer.from(plain);
  badKind.write("blob", at(plain, "zero 0000"), "latin1");
  assert.match((await failure(badKind)).message, /unknown frame kind "blob"/);
  const badJson = Buffer.from(plain);
  badJson.write("[", 40, "latin1");
  assert.match((await failure(badJson)).message, /invalid metadata JSON/);
  assert.match((await failure(packed.subarray(0, packed.length - 40))).message, /no compression trailer/);
  const flipped = Buffer.from(packed);
  flipped[at(packed, "data 0000") + 40 + 30]! ^= 0xff;
  assert.match((await failure(flipped)).message, /lz4/);
  const sizeMeta = Buffer.from(plain.toString("latin1").replace('"dataSize": 565536', '"dataSize": 565537'), "latin1");
  assert.match((await failure(sizeMeta)).message, /data size mismatch/);
  // Swap two frame headers' offsets: out of order.
  const order = Buffer.from(plain);
  order.write("0000000000000000", at(plain, "data 0000") + 5 + 0, "latin1");
  order.write("0000000000000000", at(plain, "zero 0000") + 5, "latin1");
  assert.match((await failure(order)).message, /out of order/);
  const past = Buffer.from(plain.toString("latin1").replace(`"virtualSize": ${SIZE}`, `"virtualSize": ${SIZE - 65536}`), "latin1");
  assert.match((await failure(past)).message, /exceeds the disk size/);
  const extra = Buffer.concat([plain, Buffer.from("xx")]);
  assert.match((await failure(extra)).message, /unexpected bytes after the stop frame/);
});

test("readers one after another reuse the window and the large lz4 buffers of the walk before (a chain's files checked in turn)", async (t) => {
  const bytes = await buildStream(extents, { virtualSize: SIZE, compressLevel: 2 });
  const pool = BufferPool.fixed(32 * 1024, 2); // smaller than the frames
  const walk = async () => {
    const reader = await StreamReader.open(new MemorySource(bytes));
    let own = 0;
    for await (const f of reader.frames()) {
      if (f.kind !== "data") continue;
      for await (const p of reader.pieces(f, pool)) {
        if (p.buffer) pool.release(p.buffer);
        else own++;
      }
    }
    return own;
  };
  assert.ok((await walk()) > 0, "frames larger than the pool come in the reader's own buffers");
  let allocations = 0;
  const slow = Buffer.allocUnsafeSlow;
  t.mock.method(Buffer, "allocUnsafeSlow", (n: number) => {
    if (n >= 64 * 1024) allocations++;
    return slow(n);
  });
  for (let run = 0; run < 3; run++) assert.ok((await walk()) > 0);
  assert.equal(allocations, 0, "later readers allocate no window or large buffer of their own");
});
