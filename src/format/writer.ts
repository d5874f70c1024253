/**
 * Writes one stream file: meta, data/zero frames in ascending disk order, stop, and the
 * compression trailer. Small writes are gathered in one reused staging buffer; large payloads
 * go straight to the sink. Keeps the running Adler-32 for the `.chksum` file.
 */
import { Adler32 } from "./checksum.js";
import { encodeHeader, FRAME_LEN, TERM, type FrameKind } from "./frame.js";
import { formatMetadata, type StreamMetadata } from "./metadata.js";
import type { ByteSink } from "./sink.js";
import { formatTrailer, type TrailerEntry } from "./trailer.js";
import type { IntegrityRecorder } from "./integrity.js";

export interface StreamWriterOptions {
  /** Payloads are lz4 frames (one per piece) and a trailer is written. */
  compressed: boolean;
  /** Extents of at least this length were read (and compressed) in pieces of this size. */
  chunkSize: number;
  stagingSize?: number;
  /** Records each frame for the `.integrity` side file (data CRCs are fed by the caller). */
  integrity?: IntegrityRecorder;
}

export interface StreamSummary {
  bytes: number;
  adler32: number;
  dataSize: number;
}

const DIRECT_WRITE_MIN = 256 * 1024;

export class StreamWriter {
  private readonly staging: Buffer;
  private staged = 0;
  private readonly checksum = new Adler32();
  private bytes = 0;
  private expectedDataSize = -1;
  private dataSize = 0;
  private nextStart = 0;
  private open: { start: number; length: number; received: number; frames: number[]; frameBytes: number } | null = null;
  private readonly trailer: TrailerEntry[] = [];
  private finished = false;

  constructor(
    private readonly sink: ByteSink,
    private readonly options: StreamWriterOptions,
  ) {
    this.staging = Buffer.allocUnsafe(options.stagingSize ?? 1 << 20);
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
    this.open = { start, length, received: 0, frames: [], frameBytes: 0 };
    this.options.integrity?.beginData(start, length);
  }

  /**
   * Raw extent bytes, or lz4 frame bytes when compressed: a frame may arrive in several
   * parts, the last one with `frameEnd` true (the default).
   */
  async payload(chunk: Uint8Array, frameEnd = true): Promise<void> {
    const o = this.open;
    if (!o) throw new Error("stream writer: payload outside a data frame");
    if (this.options.compressed) {
      o.frameBytes += chunk.length;
      if (frameEnd) {
        o.frames.push(o.frameBytes);
        o.frameBytes = 0;
      }
    } else if ((o.received += chunk.length) > o.length) throw new Error(`stream writer: data frame at ${o.start} overflows its length ${o.length}`);
    await this.put(chunk);
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
    this.options.integrity?.endData();
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
    this.finished = true;
    return { bytes: this.bytes, adler32: this.checksum.value, dataSize: this.dataSize };
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
    if (this.staging.length - this.staged < FRAME_LEN) await this.flush();
    this.staged = encodeHeader(kind, start, length, this.staging, this.staged);
  }

  private async put(chunk: Uint8Array): Promise<void> {
    if (chunk.length >= DIRECT_WRITE_MIN) {
      await this.flush();
      this.bytes += chunk.length;
      // The checksum runs on this thread while the write is in flight on libuv's pool.
      const written = this.sink.write(chunk);
      this.checksum.update(chunk);
      await written;
      return;
    }
    if (this.staging.length - this.staged < chunk.length) await this.flush();
    this.staging.set(chunk, this.staged);
    this.staged += chunk.length;
  }

  private async flush(): Promise<void> {
    if (this.staged === 0) return;
    const chunk = this.staging.subarray(0, this.staged);
    this.bytes += chunk.length;
    this.staged = 0;
    const written = this.sink.write(chunk);
    this.checksum.update(chunk);
    await written;
  }
}
