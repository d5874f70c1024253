import { test } from "node:test";
import assert from "node:assert/strict";
import { applyStream } from "../../src/pipeline/restore-stream.js";
import type { BlockWriter } from "../../src/pipeline/types.js";
import { StreamReader } from "../../src/format/reader.js";
import { BufferPool } from "../../src/util/buffer-pool.js";
import { MemorySource } from "../helpers/memory-streams.js";
import { buildStream, pattern, type TestExtent } from "../helpers/streams.js";

class MemoryWriter implements BlockWriter {
  inFlight = 0;
  maxInFlight = 0;
  zeroed: [number, number][] = [];
  constructor(
    readonly image: Buffer,
    readonly failAt: number | null = null,
  ) {}
  async write(offset: number, data: Buffer): Promise<void> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    const copy = Buffer.from(data); // what a socket write would take
    await new Promise((r) => setTimeout(r, Math.random() * 3));
    this.inFlight--;
    if (this.failAt !== null && offset <= this.failAt && this.failAt < offset + data.length) throw new Error(`ENOSPC at ${offset}`);
    copy.copy(this.image, offset);
  }
  async zero(offset: number, length: number): Promise<void> {
    this.zeroed.push([offset, length]);
    this.image.fill(0, offset, offset + length);
  }
  async flush(): Promise<void> {}
}

const SIZE = 2 * 1024 * 1024;
const extents: TestExtent[] = [
  { start: 0, data: pattern(700 * 1024, 3) },
  { start: 700 * 1024, zero: 300 * 1024 },
  { start: 1000 * 1024, data: pattern(SIZE - 1000 * 1024, 4) },
];

for (const level of [undefined, 2]) {
  test(`applyStream ${level ? "lz4" : "plain"}: pipelined writes, bit-exact, pool drained`, async () => {
    const bytes = await buildStream(extents, { virtualSize: SIZE, compressLevel: level, chunkSize: 256 * 1024 });
    const reader = await StreamReader.open(new MemorySource(bytes));
    const writer = new MemoryWriter(Buffer.alloc(SIZE, 0xee));
    const pool = BufferPool.fixed(128 * 1024, 4);
    const r = await applyStream({ reader, writer, pool, freshTarget: false });
    const expected = Buffer.alloc(SIZE);
    for (const e of extents) if ("data" in e) e.data.copy(expected, e.start);
    assert.deepEqual(writer.image, expected, "zero frames zero older data when not fresh");
    assert.deepEqual(writer.zeroed, [[700 * 1024, 300 * 1024]]);
    assert.equal(r.dataBytes, SIZE - 300 * 1024);
    assert.equal(pool.bytesInUse, 0);
    if (!level) assert.ok(writer.maxInFlight > 1);
  });
}

test("applyStream: fresh target skips zero frames; a failed write rejects after draining", async () => {
  const bytes = await buildStream(extents, { virtualSize: SIZE });
  const fresh = new MemoryWriter(Buffer.alloc(SIZE));
  await applyStream({ reader: await StreamReader.open(new MemorySource(bytes)), writer: fresh, pool: BufferPool.fixed(64 * 1024, 4), freshTarget: true });
  assert.deepEqual(fresh.zeroed, []);
  const pool = BufferPool.fixed(64 * 1024, 4);
  const failing = new MemoryWriter(Buffer.alloc(SIZE), 1200 * 1024);
  await assert.rejects(applyStream({ reader: await StreamReader.open(new MemorySource(bytes)), writer: failing, pool, freshTarget: true }), /ENOSPC/);
  assert.equal(pool.bytesInUse, 0);
  assert.equal(failing.inFlight, 0);
});
