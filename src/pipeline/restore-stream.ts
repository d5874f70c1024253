/**
 * The restore copy engine: one stream file applied to a block device. Data pieces are
 * written with several writes in flight (bounded by the buffer pool); `zero` frames are
 * skipped on a fresh image and become write-zeroes when applied over older data.
 */
import type { StreamReader } from "../format/reader.js";
import type { BufferPool } from "../util/buffer-pool.js";
import { InFlight } from "../util/in-flight.js";
import type { BlockWriter, ProgressFn } from "./types.js";
import type { IntegrityChecker } from "../format/integrity.js";

export interface StreamRestoreOptions {
  reader: StreamReader;
  writer: BlockWriter;
  pool: BufferPool;
  /** The target holds only zeros so far (first file of a chain on a new image). */
  freshTarget: boolean;
  onProgress?: ProgressFn;
  /** Checks frames against the `.integrity` record before they count as applied. */
  integrity?: IntegrityChecker | null;
}

export interface StreamRestoreResult {
  dataBytes: number;
  zeroedBytes: number;
}

export async function applyStream(o: StreamRestoreOptions): Promise<StreamRestoreResult> {
  // Several writes in flight (as many as the pool has buffers); the first failure stops reading.
  const writes = new InFlight();
  const result: StreamRestoreResult = { dataBytes: 0, zeroedBytes: 0 };
  const check = o.integrity ?? null;
  try {
    check?.meta(o.reader.metaBytes);
    for await (const frame of o.reader.frames()) {
      if (writes.failed) break;
      check?.frame(frame.kind, frame.start, frame.length);
      if (frame.kind === "zero") {
        if (!o.freshTarget) {
          writes.track(o.writer.zero(frame.start, frame.length));
          result.zeroedBytes += frame.length;
        }
        continue;
      }
      for await (const piece of o.reader.pieces(frame, o.pool)) {
        if (writes.failed) {
          if (piece.buffer) o.pool.release(piece.buffer);
          break;
        }
        const { buffer, data, offset } = piece;
        check?.data(data);
        if (buffer) {
          writes.track(o.writer.write(offset, data).finally(() => o.pool.release(buffer)));
        } else {
          await o.writer.write(offset, data); // reader-owned buffer: valid only until the next piece
        }
        result.dataBytes += data.length;
        o.onProgress?.(data.length);
      }
      if (!writes.failed) check?.endData();
    }
    if (!writes.failed) check?.end();
  } finally {
    await writes.settle();
  }
  if (writes.failed) throw writes.failure;
  return result;
}
