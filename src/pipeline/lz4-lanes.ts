/**
 * lz4 compression on several lanes: consecutive lz4 frames (one per piece of at most the
 * chunk size) are compressed at the same time on libuv's pool, one frame per lane, each frame
 * built from its parts in order. The output reaches the stream writer strictly in file order:
 * the frame at the head is written as it is produced; a lane working ahead keeps at most
 * `buffersPerLane` output buffers and then waits until its frame reaches the head. Every lane
 * has its own buffers, so the head can always go on (no deadlock), and memory stays bounded.
 * Parts are compressed exactly as by one encoder in one pass: output is byte-identical.
 */
import { Lz4FrameEncoder } from "../format/lz4.js";
import type { StreamWriter } from "../format/writer.js";
import { BufferPool } from "../util/buffer-pool.js";

/** Input bytes per encoder call (smaller calls: a lane ahead gets further on its buffers). */
export const LANE_PART = 1 << 20;

interface Chunk {
  buffer: Buffer;
  length: number;
  /** Output buffers go back to their lane's pool once written (headers: null). */
  pool: BufferPool | null;
  /** The frame's last bytes. */
  last: boolean;
}

class FrameOutput {
  readonly chunks: Chunk[] = [];
  error: unknown = null;
  private wake: (() => void) | null = null;
  push(chunk: Chunk): void {
    // A failed frame is never written: its buffers go straight back (a lane may wait for them).
    if (this.error) chunk.pool?.release(chunk.buffer);
    else this.chunks.push(chunk);
    this.notify();
  }
  fail(e: unknown): void {
    this.error ??= e;
    for (const c of this.chunks.splice(0)) c.pool?.release(c.buffer);
    this.notify();
  }
  notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }
  next(): Promise<void> {
    return new Promise((resolve) => (this.wake = resolve));
  }
}

class Lane {
  readonly encoder = new Lz4FrameEncoder();
  readonly buffers: BufferPool;
  /** The lane's encoder calls, in order. */
  work: Promise<void> = Promise.resolve();
  constructor(count: number) {
    this.buffers = BufferPool.fixed(this.encoder.bound(LANE_PART) + 64, count);
  }
}

export interface Lz4LanesOptions {
  writer: StreamWriter;
  level: number;
  lanes: number;
  buffersPerLane: number;
}

export class Lz4Lanes {
  private readonly lanes: Lane[];
  private nextLane = 0;
  private current: { lane: Lane; frame: FrameOutput } | null = null;
  /** Writer calls and frame outputs, strictly in file order. */
  private output: Promise<void> = Promise.resolve();
  private failure: unknown = null;
  /** Frames begun and not yet written. */
  private readonly live = new Set<FrameOutput>();

  constructor(private readonly o: Lz4LanesOptions) {
    this.lanes = Array.from({ length: Math.max(1, o.lanes) }, () => new Lane(Math.max(2, o.buffersPerLane)));
  }

  /** A writer call (beginData, endData, zero) in its place among the frames. */
  inOrder(call: () => Promise<void>): void {
    this.throwIfFailed();
    this.output = this.output.then(() => (this.failure ? undefined : call())).catch((e: unknown) => this.fail(e));
  }

  /** Starts the next lz4 frame, of `contentSize` input bytes, on the next lane. */
  beginFrame(contentSize: number): void {
    this.throwIfFailed();
    const lane = this.lanes[this.nextLane]!;
    this.nextLane = (this.nextLane + 1) % this.lanes.length;
    const frame = new FrameOutput();
    this.live.add(frame);
    this.current = { lane, frame };
    this.onLane(lane, frame, async () => {
      const header = Buffer.allocUnsafe(32);
      frame.push({ buffer: header, length: lane.encoder.begin(header, contentSize, this.o.level), pool: null, last: false });
    });
    this.output = this.output
      .then(() => (this.failure ? undefined : this.drain(frame)))
      .catch((e: unknown) => this.fail(e))
      .finally(() => this.live.delete(frame));
  }

  /** Input of the current frame; `release` is called once it is consumed (or on failure). */
  update(data: Buffer, release: () => void): void {
    const { lane, frame } = this.current!;
    const parts: Buffer[] = [];
    for (let at = 0; at < data.length; at += LANE_PART) parts.push(data.subarray(at, Math.min(data.length, at + LANE_PART)));
    if (parts.length === 0) return release();
    let left = parts.length;
    const done = () => void (--left === 0 && release());
    for (const part of parts) {
      this.onLane(
        lane,
        frame,
        async () => {
          const out = await lane.buffers.acquire();
          try {
            const n = await lane.encoder.update(part, out);
            if (n > 0) frame.push({ buffer: out, length: n, pool: lane.buffers, last: false });
            else lane.buffers.release(out);
          } catch (e) {
            lane.buffers.release(out);
            throw e;
          }
        },
        done,
      );
    }
  }

  /** Ends the current frame. */
  endFrame(): void {
    const { lane, frame } = this.current!;
    this.current = null;
    this.onLane(lane, frame, async () => {
      const out = await lane.buffers.acquire();
      try {
        frame.push({ buffer: out, length: await lane.encoder.end(out), pool: lane.buffers, last: true });
      } catch (e) {
        lane.buffers.release(out);
        throw e;
      }
    });
  }

  /** Waits until everything is written; rethrows the first failure. */
  async flush(): Promise<void> {
    await Promise.all(this.lanes.map((l) => l.work));
    await this.output;
    this.throwIfFailed();
  }

  /** After a failure elsewhere: lets running encoder calls end (their buffers stay valid). */
  async stop(): Promise<void> {
    this.fail(new Error("lz4 lanes stopped"));
    for (const lane of this.lanes) await lane.work.catch(() => undefined);
    await this.output.catch(() => undefined);
  }

  /**
   * The first failure stops everything: frames not yet written give their buffers back, so a
   * lane waiting for one goes on, finds the failure and ends.
   */
  private fail(e: unknown): void {
    this.failure ??= e;
    for (const frame of this.live) frame.fail(this.failure);
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }

  private onLane(lane: Lane, frame: FrameOutput, step: () => Promise<void>, after?: () => void): void {
    lane.work = lane.work
      .then(() => {
        // After a failure anywhere, no more work; a frame waiting to be written learns of it.
        if (this.failure || frame.error) return frame.fail(this.failure ?? frame.error);
        return step();
      })
      .catch((e: unknown) => this.fail(e))
      .finally(() => after?.());
  }

  /** Writes one frame's output as it arrives (this frame is at the head of the file). */
  private async drain(frame: FrameOutput): Promise<void> {
    for (;;) {
      const chunk = frame.chunks.shift();
      if (!chunk) {
        if (frame.error) throw frame.error;
        await frame.next();
        continue;
      }
      try {
        await this.o.writer.payload(chunk.buffer.subarray(0, chunk.length), chunk.last);
      } finally {
        chunk.pool?.release(chunk.buffer);
      }
      if (chunk.last) return;
    }
  }
}
