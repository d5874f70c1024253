/**
 * Walks the extents and keeps reads in flight ahead of the consumer, bounded by a memory
 * budget (BufferPool) and a queue length. The consumer takes items strictly in disk order.
 */
import type { BufferPool } from "../util/buffer-pool.js";
import type { BlockReader, Extent } from "./types.js";

export type ReadAheadItem =
  | { kind: "hole"; extent: Extent }
  | { kind: "extent"; extent: Extent }
  /** One read of a data extent; `buffer` goes back to the pool after use. */
  | { kind: "read"; offset: number; length: number; buffer: Promise<Buffer> };

export interface ReadAheadOptions {
  reader: BlockReader;
  extents: Iterable<Extent> | AsyncIterable<Extent>;
  pool: BufferPool;
  /** Largest single read. */
  readSize: number;
  /** Reads never cross these boundaries (the 32 MiB pieces that become lz4 frames). */
  pieceSize?: number;
  maxQueued?: number;
}

export class ReadAhead {
  private readonly queue: ReadAheadItem[] = [];
  private producerDone = false;
  private producerError: unknown = null;
  private stopped = false;
  private wakeConsumer: (() => void) | null = null;
  private wakeProducer: (() => void) | null = null;
  private readonly maxQueued: number;

  constructor(private readonly o: ReadAheadOptions) {
    this.maxQueued = o.maxQueued ?? 1024;
    void this.produce();
  }

  /** Next item in disk order, or null at the end. Rethrows a failure of the extent source. */
  async next(): Promise<ReadAheadItem | null> {
    for (;;) {
      const item = this.queue.shift();
      if (item) {
        this.wakeProducer?.();
        return item;
      }
      if (this.producerError) throw this.producerError;
      if (this.producerDone) return null;
      await new Promise<void>((resolve) => (this.wakeConsumer = resolve));
      this.wakeConsumer = null;
    }
  }

  /** Stops reading ahead and returns every buffer it still holds (after a failure). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wakeProducer?.();
    for (;;) {
      // Releasing queued buffers also unblocks a producer waiting for pool memory.
      for (const item of this.queue.splice(0)) {
        if (item.kind !== "read") continue;
        const buf = await item.buffer.catch(() => null);
        if (buf) this.o.pool.release(buf);
      }
      if (this.producerDone && this.queue.length === 0) return;
      if (!this.producerDone) {
        await new Promise<void>((resolve) => (this.wakeConsumer = resolve));
        this.wakeConsumer = null;
      }
    }
  }

  private async push(item: ReadAheadItem): Promise<void> {
    while (this.queue.length >= this.maxQueued && !this.stopped) {
      await new Promise<void>((resolve) => (this.wakeProducer = resolve));
      this.wakeProducer = null;
    }
    this.queue.push(item);
    this.wakeConsumer?.();
  }

  private async produce(): Promise<void> {
    const { reader, pool, readSize } = this.o;
    const pieceSize = this.o.pieceSize ?? Number.MAX_SAFE_INTEGER;
    try {
      for await (const extent of this.o.extents) {
        if (this.stopped) break;
        if (!extent.data) {
          await this.push({ kind: "hole", extent });
          continue;
        }
        await this.push({ kind: "extent", extent });
        const end = extent.offset + extent.length;
        for (let offset = extent.offset; offset < end && !this.stopped; ) {
          const pieceEnd = extent.offset + (Math.floor((offset - extent.offset) / pieceSize) + 1) * pieceSize;
          const length = Math.min(readSize, end - offset, pieceEnd - offset);
          const buf = await pool.acquire(length);
          if (this.stopped) {
            pool.release(buf);
            break;
          }
          const buffer = reader.read(offset, buf.subarray(0, length)).then(
            () => buf,
            (e: unknown) => {
              pool.release(buf);
              throw e;
            },
          );
          buffer.catch(() => undefined); // observed by the consumer; never an unhandled rejection
          await this.push({ kind: "read", offset, length, buffer });
          offset += length;
        }
      }
    } catch (e) {
      this.producerError = e;
    } finally {
      this.producerDone = true;
      this.wakeConsumer?.();
    }
  }
}
