import { test } from "node:test";
import assert from "node:assert/strict";
import { IntegrityChecker, IntegrityFileError, IntegrityRecorder, parseIntegrity } from "../../src/format/integrity.js";
import { StreamReader } from "../../src/format/reader.js";
import { applyStream } from "../../src/pipeline/restore-stream.js";
import { BufferPool } from "../../src/util/buffer-pool.js";
import { MemorySource } from "../helpers/memory-streams.js";
import { buildStream, pattern, type TestExtent } from "../helpers/streams.js";

const SIZE = 1 << 20;
const extents: TestExtent[] = [
  { start: 0, data: pattern(100000, 1) },
  { start: 100000, zero: 400000 },
  { start: 500000, data: pattern(SIZE - 500000, 2) },
];

async function build(level?: number) {
  const integrity = new IntegrityRecorder();
  const bytes = await buildStream(extents, { virtualSize: SIZE, compressLevel: level, integrity });
  return { bytes, record: parseIntegrity(await integrity.text(), "x.integrity") };
}

const sink = { write: async () => {}, zero: async () => {}, flush: async () => {} };

async function apply(bytes: Buffer, record: ReturnType<typeof parseIntegrity>) {
  const reader = await StreamReader.open(new MemorySource(bytes));
  const integrity = new IntegrityChecker(record, "memory.data", !reader.compressed);
  await applyStream({ reader, writer: sink, pool: BufferPool.fixed(64 * 1024, 2), freshTarget: true, integrity });
}

for (const level of [undefined, 2]) {
  test(`integrity record round trip (${level ? "lz4" : "plain"}) accepts the intact stream`, async () => {
    const { bytes, record } = await build(level);
    assert.deepEqual(record.frames.map((f) => f.kind), ["data", "zero", "data"]);
    await apply(bytes, record);
  });
}

test("a flipped payload byte is refused, naming the frame's disk offset", async () => {
  const { bytes, record } = await build();
  const damaged = Buffer.from(bytes);
  const second = damaged.indexOf("data 000000000007a120");
  damaged[second + 40 + 1234]! ^= 0x01;
  await assert.rejects(apply(damaged, record), (e: Error) => e instanceof IntegrityFileError && /disk offset 500000/.test(e.message));
});

test("a changed offset digit in a frame header is refused", async () => {
  const { bytes, record } = await build();
  // 0x7a120 → 0x7a130: still ascending and inside the disk, so only the record notices.
  const damaged = Buffer.from(bytes.toString("latin1").replace("data 000000000007a120", "data 000000000007a130"), "latin1");
  const fixedSize = Buffer.from(damaged.toString("latin1").replace(`"virtualSize": ${SIZE}`, `"virtualSize": ${SIZE + 16}`), "latin1");
  await assert.rejects(apply(damaged, record), /integrity record|exceeds/);
  await assert.rejects(apply(fixedSize, record), IntegrityFileError);
});

test("a damaged record is refused itself", async () => {
  const r = new IntegrityRecorder();
  r.meta(Buffer.from("{}"));
  r.zero(0, 512);
  const text = (await r.text()).replace("zero 0 200", "zero 0 201");
  assert.ok(text.startsWith("virtnbd-integrity 2\n"));
  assert.throws(() => parseIntegrity(text, "f.integrity"), /damaged/);
});
