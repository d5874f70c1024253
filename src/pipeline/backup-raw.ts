/**
 * The backup copy engine for raw images (`-t raw`, raw disks with `--raw`): a file of the
 * disk's size with data written at its offsets; holes stay sparse.
 */
import type { FileHandle } from "node:fs/promises";
import { EarlyWriteback } from "../storage/writeback.js";
import { InFlight } from "../util/in-flight.js";
import { writeFullyAt } from "../util/write-fully.js";
import type { BufferPool } from "../util/buffer-pool.js";
import { ReadAhead } from "./read-ahead.js";
import type { BlockReader, Extent, ProgressFn } from "./types.js";

export interface RawBackupOptions {
  reader: BlockReader;
  extents: Iterable<Extent> | AsyncIterable<Extent>;
  file: FileHandle;
  diskSize: number;
  readSize: number;
  pool: BufferPool;
  onProgress?: ProgressFn;
}

export async function copyExtentsToRawFile(o: RawBackupOptions): Promise<void> {
  await o.file.truncate(o.diskSize);
  const ahead = new ReadAhead({ reader: o.reader, extents: o.extents, pool: o.pool, readSize: o.readSize });
  const writeback = new EarlyWriteback(o.file.fd);
  // Several writes in flight, each holding its read buffer until done.
  const writing = new InFlight(4);
  try {
    for (let item = await ahead.next(); item; item = await ahead.next()) {
      if (item.kind !== "read") continue;
      const buf = await item.buffer;
      const { offset, length } = item;
      const write = async () => {
        try {
          await writeFullyAt(o.file, buf, offset, length);
        } finally {
          o.pool.release(buf);
        }
      };
      o.onProgress?.(length);
      await writing.add(write());
      await writeback.advance(offset);
    }
    await writing.drain();
  } catch (e) {
    await writing.settle();
    await ahead.stop();
    throw e;
  } finally {
    await writeback.drain();
  }
}
