/**
 * The backup copy engine for stream files: extents read ahead from the export, data
 * optionally lz4-compressed (one frame per piece of at most `chunkSize`, built from several
 * reads), frames written in disk order. Full/copy streams get `zero` frames for holes.
 */
import { Lz4FrameEncoder } from "../format/lz4.js";
import type { StreamWriter } from "../format/writer.js";
import type { SizedPool } from "../util/sized-pool.js";
import { ReadAhead } from "./read-ahead.js";
import type { BlockReader, Extent, ProgressFn } from "./types.js";

export interface StreamBackupOptions {
  reader: BlockReader;
  extents: Iterable<Extent> | AsyncIterable<Extent>;
  /** Meta already written; the engine writes the body, the caller calls `finish()`. */
  writer: StreamWriter;
  /** inc/diff: no `zero` frames. */
  incremental: boolean;
  /** lz4 level, or null for no compression. */
  compressLevel: number | null;
  /** The export's max request size: pieces of this size become separate lz4 frames. */
  chunkSize: number;
  readSize: number;
  pool: SizedPool;
  onProgress?: ProgressFn;
}

export async function copyExtentsToStream(o: StreamBackupOptions): Promise<void> {
  const compressing = o.compressLevel !== null;
  const ahead = new ReadAhead({
    reader: o.reader,
    extents: o.extents,
    pool: o.pool,
    readSize: o.readSize,
    pieceSize: compressing ? o.chunkSize : undefined,
  });
  const encoder = compressing ? new Lz4FrameEncoder() : null;
  // Output buffers of the encoder are kept apart from the read-ahead budget (no deadlock).
  const out = encoder ? Buffer.allocUnsafeSlow(encoder.bound(o.readSize) + 64) : null;
  // Uncompressed payloads: several writes in flight, each holding its read buffer until done.
  const writing = new Set<Promise<void>>();
  const MAX_WRITES = 4;
  try {
    let extent: Extent | null = null;
    let done = 0; // bytes of the current extent delivered
    let frameLeft = 0; // bytes left in the current lz4 frame
    for (let item = await ahead.next(); item; item = await ahead.next()) {
      if (item.kind === "hole") {
        if (!o.incremental) await o.writer.zero(item.extent.offset, item.extent.length);
        continue;
      }
      if (item.kind === "extent") {
        extent = item.extent;
        done = 0;
        await o.writer.beginData(extent.offset, extent.length);
        continue;
      }
      const buf = await item.buffer;
      let handedOff = false;
      try {
        const data = buf.subarray(0, item.length);
        if (!encoder || !out || !extent) {
          const { done } = await o.writer.payloadNoWait(data);
          const settled: Promise<void> = done.then(
            () => void writing.delete(settled),
            (e: unknown) => {
              writing.delete(settled);
              throw e;
            },
          ).finally(() => o.pool.release(buf));
          settled.catch(() => undefined); // awaited below or by the drain
          writing.add(settled);
          handedOff = true;
          while (writing.size >= MAX_WRITES) await Promise.race(writing);
        } else {
          if (frameLeft === 0) {
            // A new lz4 frame: the whole extent when short, else the next chunkSize piece.
            frameLeft = Math.min(extent.length - done, extent.length >= o.chunkSize ? o.chunkSize : extent.length);
            await o.writer.payload(out.subarray(0, encoder.begin(out, frameLeft, o.compressLevel!)), false);
          }
          const n = await encoder.update(data, out);
          frameLeft -= item.length;
          if (n > 0) await o.writer.payload(out.subarray(0, n), false);
          if (frameLeft === 0) await o.writer.payload(out.subarray(0, await encoder.end(out)), true);
        }
      } finally {
        if (!handedOff) o.pool.release(buf);
      }
      done += item.length;
      o.onProgress?.(item.length);
      if (extent && done === extent.length) {
        await o.writer.endData();
        extent = null;
      }
    }
    await Promise.all(writing);
  } catch (e) {
    await Promise.allSettled(writing);
    await ahead.stop();
    throw e;
  }
}
