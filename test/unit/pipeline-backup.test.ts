import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { copyExtentsToStream } from "../../src/pipeline/backup-stream.js";
import { copyExtentsToRawFile } from "../../src/pipeline/backup-raw.js";
import type { BlockReader, Extent } from "../../src/pipeline/types.js";
import { StreamWriter } from "../../src/format/writer.js";
import { DirectoryTarget } from "../../src/storage/directory-target.js";
import { IntegrityChecker, IntegrityRecorder, parseIntegrity } from "../../src/format/integrity.js";
import { applyStream } from "../../src/pipeline/restore-stream.js";
import { StreamReader } from "../../src/format/reader.js";
import { BufferPool } from "../../src/util/buffer-pool.js";
import { MemorySink, MemorySource } from "../helpers/memory-streams.js";
import { pattern } from "../helpers/streams.js";
import { tempDir } from "../helpers/tmp.js";

const KiB = 1024;
const DISK = 3 * 1024 * KiB + 512;

/** Reads from a buffer with random delays, so completions arrive out of order. */
class MemoryReader implements BlockReader {
  inFlight = 0;
  maxInFlight = 0;
  constructor(
    readonly disk: Buffer,
    readonly failAt: number | null = null,
  ) {}
  async read(offset: number, into: Buffer): Promise<void> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    await new Promise((r) => setTimeout(r, Math.random() * 3));
    this.inFlight--;
    if (this.failAt !== null && offset <= this.failAt && this.failAt < offset + into.length) throw new Error(`EIO at ${offset}`);
    this.disk.copy(into, 0, offset, offset + into.length);
  }
}

const disk = pattern(DISK, 42);
const extents: Extent[] = [
  { offset: 0, length: 600 * KiB, data: true },
  { offset: 600 * KiB, length: 200 * KiB, data: true }, // touching data extents stay separate frames
  { offset: 800 * KiB, length: 224 * KiB, data: false },
  { offset: 1024 * KiB, length: 1536 * KiB + 512, data: true },
  { offset: 2560 * KiB + 512, length: DISK - (2560 * KiB + 512), data: false },
];
const dataSize = extents.filter((e) => e.data).reduce((a, e) => a + e.length, 0);

async function backup(compressLevel: number | null, incremental: boolean, reader = new MemoryReader(disk), integrity = new IntegrityRecorder()) {
  const sink = new MemorySink();
  const chunkSize = 512 * KiB;
  const writer = new StreamWriter(sink, { compressed: compressLevel !== null, chunkSize, integrity });
  await writer.meta({
    virtualSize: DISK, dataSize, date: "2026-01-01T00:00:00", diskName: "sda", diskFormat: "qcow2",
    checkpointName: "virtnbdbackup.0", compressed: compressLevel ?? false, compressionMethod: "lz4",
    parentCheckpoint: "", incremental, streamVersion: 2,
  });
  const pool = BufferPool.budget(1024 * KiB);
  let progress = 0;
  await copyExtentsToStream({
    reader, extents, writer, incremental, compressLevel, chunkSize, readSize: 128 * KiB, pool,
    onProgress: (n) => (progress += n),
  });
  await writer.finish();
  assert.equal(pool.bytesInUse, 0);
  assert.equal(progress, dataSize);
  return { bytes: sink.bytes(), reader };
}

async function restore(bytes: Buffer): Promise<{ image: Buffer; kinds: string[]; trailer: unknown }> {
  const r = await StreamReader.open(new MemorySource(bytes));
  const image = Buffer.alloc(r.meta.virtualSize);
  const pool = BufferPool.fixed(1024 * KiB, 2);
  const kinds: string[] = [];
  for await (const f of r.frames()) {
    kinds.push(f.kind);
    if (f.kind === "data") for await (const p of r.pieces(f, pool)) { p.data.copy(image, p.offset); if (p.buffer) pool.release(p.buffer); }
  }
  return { image, kinds, trailer: r.trailer };
}

function expected(): Buffer {
  const img = Buffer.alloc(DISK);
  for (const e of extents) if (e.data) disk.copy(img, e.offset, e.offset, e.offset + e.length);
  return img;
}

for (const level of [null, 2, 9]) {
  test(`full backup ${level === null ? "plain" : `lz4 ${level}`}: bit-exact, zero frames, pipelined reads`, async () => {
    const { bytes, reader } = await backup(level, false);
    const { image, kinds, trailer } = await restore(bytes);
    assert.deepEqual(image, expected());
    assert.deepEqual(kinds, ["data", "data", "zero", "data", "zero"]);
    assert.ok(reader.maxInFlight > 1, "reads overlap");
    if (level !== null) {
      // 600 KiB >= 512 KiB chunk: two frames; 200 KiB: one integer entry; 1.5 MiB+512: four frames.
      const t = trailer as (number | number[])[];
      assert.equal(t.length, 3);
      assert.ok(Array.isArray(t[0]) && t[0].length === 2);
      assert.equal(typeof t[1], "number");
      assert.ok(Array.isArray(t[2]) && t[2].length === 4);
    }
  });
}

test("incremental backup writes no zero frames", async () => {
  const { bytes } = await backup(2, true);
  assert.deepEqual((await restore(bytes)).kinds, ["data", "data", "data"]);
});

test("a failed read rejects the backup and returns every buffer", async () => {
  const reader = new MemoryReader(disk, 1100 * KiB);
  await assert.rejects(backup(null, false, reader), /EIO at/);
  await assert.rejects(backup(2, false, new MemoryReader(disk, 10 * KiB)), /EIO at/);
});

test("raw image backup: data at offsets, holes sparse, exact size", async (t) => {
  const dir = await tempDir(t);
  const image = await new DirectoryTarget(dir).createImage("sda.copy.data", DISK);
  const pool = BufferPool.budget(512 * KiB);
  await copyExtentsToRawFile({ reader: new MemoryReader(disk), extents, image, readSize: 64 * KiB, pool });
  await image.commit();
  const img = await readFile(join(dir, "sda.copy.data"));
  assert.equal(img.length, DISK);
  assert.deepEqual(img, expected());
  assert.equal(pool.bytesInUse, 0);
});

for (const level of [null, 2]) {
  test(`integrity record of a pipelined backup (${level === null ? "plain" : "lz4"}) matches the stream`, async () => {
    const integrity = new IntegrityRecorder();
    const { bytes } = await backup(level, false, new MemoryReader(disk), integrity);
    const record = parseIntegrity(await integrity.text(), "memory.data.integrity");
    const writer = { write: async () => {}, zero: async () => {}, flush: async () => {} };
    await applyStream({
      reader: await StreamReader.open(new MemorySource(bytes)), writer, pool: BufferPool.fixed(64 * KiB, 4), freshTarget: true,
      integrity: new IntegrityChecker(record, "memory.data", level === null),
    });
  });
}
