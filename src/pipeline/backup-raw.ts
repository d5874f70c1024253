/**
 * The backup copy engine for raw images (`-t raw`, raw disks with `--raw`): data written at
 * its offsets into an image the target created at the disk's size; holes stay sparse.
 */
import type { TargetImage } from "../storage/target.js";
import { InFlight } from "../util/in-flight.js";
import type { BufferPool } from "../util/buffer-pool.js";
import { ReadAhead } from "./read-ahead.js";
import type { BlockReader, Extent, ProgressFn } from "./types.js";

export interface RawBackupOptions {
  reader: BlockReader;
  extents: Iterable<Extent> | AsyncIterable<Extent>;
  /** Written in disk order (the target writes back behind the writes). */
  image: Pick<TargetImage, "writeAt">;
  readSize: number;
  pool: BufferPool;
  onProgress?: ProgressFn;
}

export async function copyExtentsToRawFile(o: RawBackupOptions): Promise<void> {
  const ahead = new ReadAhead({ reader: o.reader, extents: o.extents, pool: o.pool, readSize: o.readSize });
  // Several writes in flight, each holding its read buffer until done.
  const writing = new InFlight(4);
  try {
    for (let item = await ahead.next(); item; item = await ahead.next()) {
      if (item.kind !== "read") continue;
      const buf = await item.buffer;
      const { offset, length } = item;
      const write = async () => {
        try {
          await o.image.writeAt(length === buf.length ? buf : buf.subarray(0, length), offset);
        } finally {
          o.pool.release(buf);
        }
      };
      o.onProgress?.(length);
      await writing.add(write());
    }
    await writing.drain();
  } catch (e) {
    await writing.settle();
    await ahead.stop();
    throw e;
  }
}
