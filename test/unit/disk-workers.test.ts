import { test } from "node:test";
import assert from "node:assert/strict";
import { eachWithWorkers } from "../../src/backup/disk-workers.js";
import { READ_BUDGET } from "../../src/backup/read-budget.js";
import { copyExtentsToStream } from "../../src/pipeline/backup-stream.js";
import type { BlockReader } from "../../src/pipeline/types.js";
import { StreamWriter } from "../../src/format/writer.js";
import { IntegrityRecorder } from "../../src/format/integrity.js";
import type { BufferPool } from "../../src/util/buffer-pool.js";
import { MemorySink } from "../helpers/memory-streams.js";

const MiB = 1 << 20;
const READ = 4 * MiB;
const DISK = 16 * MiB;

/** Reads that take 10 ms each (a store with latency); counts the reads in flight over all disks. */
class SlowReaders {
  inFlight = 0;
  maxInFlight = 0;
  reader(): BlockReader {
    return {
      read: async (_offset: number, into: Buffer) => {
        this.inFlight++;
        this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
        await new Promise((r) => setTimeout(r, 10));
        into.fill(7);
        this.inFlight--;
      },
    };
  }
}

async function copyDisk(reader: BlockReader, pool: BufferPool): Promise<void> {
  const writer = new StreamWriter(new MemorySink(), { compressed: false, chunkSize: 32 * MiB, integrity: new IntegrityRecorder() });
  await writer.meta({
    virtualSize: DISK, dataSize: DISK, date: "2026-12-05T00:00:00", diskName: "sda", diskFormat: "qcow2",
    checkpointName: "virtnbdbackup.0", compressed: false, compressionMethod: "lz4",
    parentCheckpoint: "", incremental: false, streamVersion: 2,
  });
  await copyExtentsToStream({ reader, extents: [{ offset: 0, length: DISK, data: true }], writer, incremental: false, compressLevel: null, chunkSize: 32 * MiB, readSize: READ, pool });
  await writer.finish();
}

test("two disks at once keep their reads in flight side by side: a worker's reads never wait for the other's budget", async () => {
  const slow = new SlowReaders();
  const pools = new Set<BufferPool>();
  await eachWithWorkers(["sda", "sdb"], 2, () => false, async (_disk, pool) => {
    pools.add(pool);
    await copyDisk(slow.reader(), pool);
    assert.equal(pool.bytesInUse, 0);
  });
  assert.equal(pools.size, 2);
  // One budget shared by both disks held 2 reads of 4 MiB in all.
  assert.equal(slow.maxInFlight, 2 * (READ_BUDGET / READ));
});

test("one worker: the disks one after another, through one pool; nothing starts once stopped", async () => {
  const slow = new SlowReaders();
  const pools = new Set<BufferPool>();
  const done: string[] = [];
  await eachWithWorkers(["sda", "sdb", "sdc"], 1, () => done.length === 2, async (disk, pool) => {
    pools.add(pool);
    await copyDisk(slow.reader(), pool);
    done.push(disk);
  });
  assert.deepEqual(done, ["sda", "sdb"]);
  assert.equal(pools.size, 1);
  assert.equal(slow.maxInFlight, READ_BUDGET / READ);
});

test("more workers than disks: each disk once", async () => {
  const seen: string[] = [];
  await eachWithWorkers(["sda"], 3, () => false, async (disk) => {
    seen.push(disk);
  });
  assert.deepEqual(seen, ["sda"]);
});
