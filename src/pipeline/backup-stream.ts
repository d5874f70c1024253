/**
 * The backup copy engine for stream files: extents read ahead from the export, data
 * optionally lz4-compressed (one frame per piece of at most `chunkSize`, built from several
 * reads; consecutive frames compressed at the same time on several lanes), frames written in
 * disk order. Full/copy streams get `zero` frames for holes.
 */
import { availableParallelism } from "node:os";
import type { StreamWriter } from "../format/writer.js";
import { InFlight } from "../util/in-flight.js";
import { Lz4Lanes } from "./lz4-lanes.js";
import type { BufferPool } from "../util/buffer-pool.js";
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
  pool: BufferPool;
  onProgress?: ProgressFn;
}

/** lz4 frames compressed at once (libuv's pool has four threads; writes and hashing need some). */
const LZ4_LANES = Math.max(1, Math.min(3, availableParallelism()));
/** 1 MiB output buffers per lane: how far a lane may work ahead of the frame being written. */
const LZ4_BUFFERS_PER_LANE = 6;

export async function copyExtentsToStream(o: StreamBackupOptions): Promise<void> {
  const compressing = o.compressLevel !== null;
  const ahead = new ReadAhead({
    reader: o.reader,
    extents: o.extents,
    pool: o.pool,
    readSize: o.readSize,
    pieceSize: compressing ? o.chunkSize : undefined,
  });
  // Compressed: every writer call goes through the lanes, in file order.
  const lanes = compressing ? new Lz4Lanes({ writer: o.writer, level: o.compressLevel!, lanes: LZ4_LANES, buffersPerLane: LZ4_BUFFERS_PER_LANE }) : null;
  const inOrder = async (call: () => Promise<void>) => (lanes ? lanes.inOrder(call) : await call());
  // Uncompressed payloads: several writes in flight, each holding its read buffer until done.
  const writing = new InFlight(4);
  try {
    let extent: Extent | null = null;
    let done = 0; // bytes of the current extent delivered
    let frameLeft = 0; // bytes left in the current lz4 frame
    for (let item = await ahead.next(); item; item = await ahead.next()) {
      if (item.kind === "hole") {
        const { offset, length } = item.extent;
        if (!o.incremental) await inOrder(() => o.writer.zero(offset, length));
        continue;
      }
      if (item.kind === "extent") {
        const e = (extent = item.extent);
        done = 0;
        await inOrder(() => o.writer.beginData(e.offset, e.length));
        continue;
      }
      const buf = await item.buffer;
      let handedOff = false;
      try {
        const data = buf.subarray(0, item.length);
        if (!lanes || !extent) {
          const { done } = await o.writer.payloadNoWait(data);
          handedOff = true;
          await writing.add(done.finally(() => o.pool.release(buf)));
        } else {
          if (frameLeft === 0) {
            // A new lz4 frame: the whole extent when short, else the next chunkSize piece.
            frameLeft = Math.min(extent.length - done, extent.length >= o.chunkSize ? o.chunkSize : extent.length);
            lanes.beginFrame(frameLeft);
          }
          handedOff = true;
          lanes.update(data, () => o.pool.release(buf));
          frameLeft -= item.length;
          if (frameLeft === 0) lanes.endFrame();
        }
      } finally {
        if (!handedOff) o.pool.release(buf);
      }
      done += item.length;
      o.onProgress?.(item.length);
      if (extent && done === extent.length) {
        extent = null;
        await inOrder(() => o.writer.endData());
      }
    }
    await writing.drain();
    await lanes?.flush();
  } catch (e) {
    await writing.settle();
    await lanes?.stop();
    await ahead.stop();
    throw e;
  }
}
