/**
 * Writes one stream file: meta, data/zero frames in ascending disk order, stop, and the
 * compression trailer. Small writes are gathered in staging buffers; large payloads go
 * straight to the sink. Writes are issued in file order but may complete concurrently
 * (`payloadNoWait`). Every chunk is hashed once on libuv's pool; the sums are combined into
 * the file's Adler-32 (`.chksum`) and each data frame's payload Adler-32 (`.integrity`).
 */
import { native } from "../native/index.js";
import { encodeHeader, FRAME_LEN, TERM, type FrameKind } from "./frame.js";
import { formatMetadata, type StreamMetadata } from "./metadata.js";
import type { ByteSink } from "./sink.js";
import { formatTrailer, type TrailerEntry } from "./trailer.js";
import type { IntegrityRecorder } from "./integrity.js";
import { InFlight } from "../util/in-flight.js";

export interface StreamWriterOptions {
  /** Payloads are lz4 frames (one per piece) and a trailer is written. */
  compressed: boolean;
  /** Extents of at least this length were read (and compressed) in pieces of this size. */
  chunkSize: number;
  stagingSize?: number;
  /** Records each frame (and its payload's Adler-32) for the `.integrity` side file. */
  integrity?: IntegrityRecorder;
}

export interface StreamSummary {
  bytes: number;
  adler32: number;
  dataSize: number;
}

const DIRECT_WRITE_MIN = 256 * 1024;

/** A write in flight (wrapped: a promise resolving to a promise would adopt it). */
export interface Issued {
  done: Promise<void>;
}

export class StreamWriter {
  /** Two staging buffers: one fills while the other may still be in flight. */
  private readonly stagingBuffers: { buf: Buffer; busy: Promise<void> | null }[];
  private current = 0;
  private staged = 0;
  /** Adler-32 of the file so far, combined in file order from per-chunk sums. */
  private fileAdler: Promise<number> = Promise.resolve(1);
  /** Writes issued and not yet done; the first failure fails everything after it. */
  private readonly writes = new InFlight();
  private bytes = 0;
  private expectedDataSize = -1;
  private dataSize = 0;
  private nextStart = 0;
  private open: {
    start: number;
    length: number;
    received: number;
    frames: number[];
    frameBytes: number;
    /** Adler-32 of the stored payload so far (for the integrity record). */
    payloadAdler: Promise<number>;
  } | null = null;
  private readonly trailer: TrailerEntry[] = [];
  private finished = false;

  constructor(
    private readonly sink: ByteSink,
    private readonly options: StreamWriterOptions,
  ) {
    const size = options.stagingSize ?? 1 << 20;
    this.stagingBuffers = [0, 1].map(() => ({ buf: Buffer.allocUnsafe(size), busy: null }));
  }

  async meta(meta: StreamMetadata): Promise<void> {
    if (this.bytes + this.staged !== 0) throw new Error("stream writer: meta must come first");
    const json = Buffer.from(formatMetadata(meta), "latin1"); // ASCII by construction
    this.expectedDataSize = meta.dataSize;
    this.options.integrity?.meta(json);
    await this.header("meta", 0, json.length);
    await this.put(json);
    await this.put(TERM);
  }

  async beginData(start: number, length: number): Promise<void> {
    this.checkOrder(start, length);
    await this.header("data", start, length);
    this.open = { start, length, received: 0, frames: [], frameBytes: 0, payloadAdler: Promise.resolve(1) };
    this.options.integrity?.beginData(start, length);
  }

  /**
   * Raw extent bytes, or lz4 frame bytes when compressed: a frame may arrive in several
   * parts, the last one with `frameEnd` true (the default).
   */
  async payload(chunk: Uint8Array, frameEnd = true): Promise<void> {
    await (await this.payloadNoWait(chunk, frameEnd)).done;
  }

  /**
   * Like `payload`, but resolves as soon as the chunk's write is issued (in file order), with
   * `done` for its completion: `chunk` must stay unchanged until `done` resolves.
   */
  async payloadNoWait(chunk: Uint8Array, frameEnd = true): Promise<Issued> {
    const o = this.open;
    if (!o) throw new Error("stream writer: payload outside a data frame");
    if (this.options.compressed) {
      o.frameBytes += chunk.length;
      if (frameEnd) {
        o.frames.push(o.frameBytes);
        o.frameBytes = 0;
      }
    } else if ((o.received += chunk.length) > o.length) throw new Error(`stream writer: data frame at ${o.start} overflows its length ${o.length}`);
    return this.put(chunk, o);
  }

  async endData(): Promise<void> {
    const o = this.open;
    if (!o) throw new Error("stream writer: endData without beginData");
    if (this.options.compressed) {
      if (o.frameBytes !== 0) throw new Error(`stream writer: unfinished lz4 frame in data frame at ${o.start}`);
      const chunked = o.length >= this.options.chunkSize;
      if (o.frames.length === 0 || (!chunked && o.frames.length !== 1)) {
        throw new Error(`stream writer: data frame at ${o.start} has ${o.frames.length} lz4 frames`);
      }
      this.trailer.push(chunked ? o.frames : o.frames[0]!);
    } else if (o.received !== o.length) {
      throw new Error(`stream writer: data frame at ${o.start} got ${o.received} of ${o.length} bytes`);
    }
    this.options.integrity?.endData(o.payloadAdler);
    this.dataSize += o.length;
    this.nextStart = o.start + o.length;
    this.open = null;
    await this.put(TERM);
  }

  async zero(start: number, length: number): Promise<void> {
    this.checkOrder(start, length);
    this.nextStart = start + length;
    this.options.integrity?.zero(start, length);
    await this.header("zero", start, length);
  }

  /** Writes stop (and the trailer), flushes, and returns size and checksum of the whole file. */
  async finish(): Promise<StreamSummary> {
    if (this.open) throw new Error("stream writer: unfinished data frame");
    if (this.expectedDataSize !== this.dataSize) {
      throw new Error(`stream writer: wrote ${this.dataSize} data bytes, metadata announced ${this.expectedDataSize}`);
    }
    await this.header("stop", 0, 0);
    if (this.options.compressed) {
      const json = Buffer.from(formatTrailer(this.trailer), "latin1");
      await this.put(json);
      await this.put(TERM);
      await this.header("comp", 0, json.length);
    }
    await this.flush();
    await this.writes.settle();
    if (this.writes.failed) throw this.writes.failure;
    const adler32 = await this.fileAdler;
    this.finished = true;
    return { bytes: this.bytes, adler32, dataSize: this.dataSize };
  }

  get isFinished(): boolean {
    return this.finished;
  }

  private checkOrder(start: number, length: number): void {
    if (this.open) throw new Error("stream writer: unfinished data frame");
    if (this.expectedDataSize < 0) throw new Error("stream writer: meta must come first");
    if (start < this.nextStart) throw new Error(`stream writer: frame at ${start} overlaps or precedes ${this.nextStart}`);
    if (length <= 0) throw new Error(`stream writer: empty frame at ${start}`);
  }

  private async header(kind: FrameKind, start: number, length: number): Promise<void> {
    if (this.stagingBuffers[this.current]!.buf.length - this.staged < FRAME_LEN) await this.flush();
    this.staged = encodeHeader(kind, start, length, this.stagingBuffers[this.current]!.buf, this.staged);
  }

  /**
   * Issues `chunk` after everything before it; resolves once issued, with its completion.
   * Payload chunks (`frame`) also add to their frame's Adler-32: one hash per byte serves both
   * the frame record and the file checksum.
   */
  private async put(chunk: Uint8Array, frame: NonNullable<StreamWriter["open"]> | null = null): Promise<Issued> {
    if (chunk.length >= DIRECT_WRITE_MIN) {
      await this.flush();
      const { done, sum } = this.issue(chunk);
      if (frame) frame.payloadAdler = combine(frame.payloadAdler, sum, chunk.length);
      return { done };
    }
    if (frame) frame.payloadAdler = combine(frame.payloadAdler, Promise.resolve(native.adler32(1, chunk)), chunk.length);
    const staging = this.stagingBuffers[this.current]!.buf;
    if (staging.length - this.staged < chunk.length) await this.flush();
    this.stagingBuffers[this.current]!.buf.set(chunk, this.staged);
    this.staged += chunk.length;
    return { done: Promise.resolve() }; // copied: the caller's buffer is free at once
  }

  /** Sends the staged bytes; switches to the other staging buffer (waiting until it is free). */
  private async flush(): Promise<void> {
    if (this.staged === 0) return;
    const slot = this.stagingBuffers[this.current]!;
    slot.busy = this.issue(slot.buf.subarray(0, this.staged)).done;
    this.staged = 0;
    this.current = 1 - this.current;
    const next = this.stagingBuffers[this.current]!;
    if (next.busy) await next.busy;
    next.busy = null;
  }

  /**
   * Starts the write and the checksum of `chunk` (on the pool; in one pass when the sink can
   * sum what it copies); `done` settles when both are done.
   */
  private issue(chunk: Uint8Array): { done: Promise<void>; sum: Promise<number> } {
    if (this.writes.failed) {
      // A staging slot may hold this without anyone awaiting it (the stream is abandoned after
      // the failure): it must not become an unhandled rejection that kills the process (ENOSPC
      // mid-data left the libvirt job running).
      const failed = Promise.reject(this.writes.failure);
      failed.catch(() => undefined);
      return { done: failed, sum: Promise.resolve(1) }; // sums after a failure count for nothing
    }
    this.bytes += chunk.length;
    let written: Promise<unknown>;
    let sum: Promise<number>;
    if (this.sink.writeSummed) {
      written = sum = this.sink.writeSummed(chunk);
    } else {
      sum = native.adler32Async(1, chunk);
      written = Promise.all([this.sink.write(chunk), sum]);
    }
    // A failed write is reported through `done` (and by finish()); the sums never reject.
    sum = sum.catch(() => 1);
    this.fileAdler = combine(this.fileAdler, sum, chunk.length);
    this.writes.track(written); // first: the failure is recorded before `done` reports it
    const done: Promise<void> = written.then(() => undefined);
    done.catch(() => undefined); // reported through the caller and by finish()
    return { done, sum };
  }
}

/** Adler-32 of `a` followed by `length` bytes whose own Adler-32 is `b`. */
function combine(a: Promise<number>, b: Promise<number>, length: number): Promise<number> {
  return Promise.all([a, b]).then(([x, y]) => native.adler32Combine(x, y, length));
}
