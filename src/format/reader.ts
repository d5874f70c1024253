/**
 * Reads one stream file through positional reads: meta first, the compression trailer from
 * the end, then frames in order with every rule of the format checked (order, bounds,
 * terminators, trailer entries, data size). Payloads come out in pieces of pool buffers.
 */
import type { BufferPool } from "../util/buffer-pool.js";
import { StreamFormatError } from "./errors.js";
import { FRAME_LEN, parseHeader, type FrameHeader } from "./frame.js";
import { lz4ContentSize, lz4Decompress } from "./lz4.js";
import { isCompressed, MetadataError, parseMetadata, type StreamMetadata } from "./metadata.js";
import { readExactly, readExactlySync, ShortReadError, type RandomAccessSource } from "./source.js";
import { parseTrailer, TrailerError, type TrailerEntry } from "./trailer.js";

/** Upper bound for one decoded lz4 frame (the original writes at most 32 MiB). */
export const MAX_LZ4_PIECE = 128 * 1024 * 1024;
const MAX_META_LEN = 1024 * 1024;
const WINDOW = 64 * 1024;

/**
 * Windows of readers done walking their frames, for the next walk: a restore of a full and 30
 * incs walks 62 streams one after another; each keeping its own window held 4 MiB.
 */
const idleWindows: Buffer[] = [];
const IDLE_WINDOWS = 2;

/**
 * The same for the large buffers of lz4 payloads (a compressed frame, a decoded one larger
 * than the caller's pool): a check of a chain's 31 lz4 files without `.chksum` allocated 64 MiB
 * per file, garbage piling up until V8 collected it.
 */
const idleLarge = { compressed: [] as Buffer[], decoded: [] as Buffer[] };
const IDLE_LARGE = 1;

/** An idle large buffer of its kind of at least `size` bytes, or a new one. */
function takeLarge(kind: keyof typeof idleLarge, size: number): Buffer {
  const idle = idleLarge[kind];
  const i = idle.findIndex((b) => b.length >= size);
  return i >= 0 ? idle.splice(i, 1)[0]! : Buffer.allocUnsafeSlow(size);
}

function giveLarge(kind: keyof typeof idleLarge, b: Buffer | null): void {
  if (b && idleLarge[kind].length < IDLE_LARGE) idleLarge[kind].push(b);
}

export interface DataFrame {
  kind: "data";
  start: number;
  length: number;
  /** File position of the payload. */
  payload: number;
  /** Payload bytes in the file (compressed size when compressed). */
  payloadBytes: number;
  /** Index among data frames (trailer entry). */
  index: number;
}

export interface ZeroFrame {
  kind: "zero";
  start: number;
  length: number;
}

export type BodyFrame = DataFrame | ZeroFrame;

export interface DataPiece {
  /** Disk offset of `data[0]`. */
  offset: number;
  data: Buffer;
  /** Give this back to the pool when done with `data` (null: reader-owned, valid until the next piece). */
  buffer: Buffer | null;
}

export interface OpenOptions {
  /** Load and check the compression trailer (not needed to only read the metadata). */
  trailer?: boolean;
}

export class StreamReader {
  /** Taken when a walk of the frames starts, given back when it ends (`idleWindows`). */
  private windowBacking: Buffer | null = null;
  private window: Buffer = Buffer.alloc(0);
  private windowPos = 0;
  private compressedBuf: Buffer | null = null;
  private oversize: Buffer | null = null;

  private constructor(
    readonly source: RandomAccessSource,
    readonly meta: StreamMetadata,
    readonly rawMeta: Record<string, unknown>,
    /** The metadata JSON exactly as stored. */
    readonly metaBytes: Buffer,
    readonly compressed: boolean,
    readonly trailer: TrailerEntry[] | null,
    /** File position of the first body frame. */
    readonly bodyStart: number,
    /** File position where frames end (the trailer's start when compressed). */
    readonly bodyEnd: number,
  ) {}

  get name(): string {
    return this.source.name;
  }

  static async open(source: RandomAccessSource, options: OpenOptions = {}): Promise<StreamReader> {
    const fail = (offset: number, reason: string): never => {
      throw new StreamFormatError(source.name, offset, reason);
    };
    if (source.size < FRAME_LEN) fail(0, `file too short for a stream (${source.size} bytes)`);
    const head = Buffer.allocUnsafe(FRAME_LEN);
    await readExactly(source, head, 0, FRAME_LEN, 0);
    const h = parseHeader(head, 0, source.name, 0);
    if (h.kind !== "meta") fail(0, `stream does not start with a meta frame (found "${h.kind}")`);
    if (h.length > MAX_META_LEN || FRAME_LEN + h.length + 2 > source.size) fail(0, `metadata length ${h.length} exceeds the file`);
    const json = Buffer.allocUnsafe(h.length + 2);
    await readExactly(source, json, 0, json.length, FRAME_LEN);
    if (json[h.length] !== 0x0d || json[h.length + 1] !== 0x0a) fail(FRAME_LEN + h.length, "metadata not followed by CR LF");
    let parsed: ReturnType<typeof parseMetadata>;
    try {
      parsed = parseMetadata(json.subarray(0, h.length).toString("utf8"));
    } catch (e) {
      if (e instanceof MetadataError) return fail(FRAME_LEN, e.message);
      throw e;
    }
    const compressed = isCompressed(parsed.meta);
    let trailer: TrailerEntry[] | null = null;
    let bodyEnd = source.size;
    if (compressed && options.trailer !== false) {
      ({ trailer, bodyEnd } = await readTrailer(source));
    }
    return new StreamReader(source, parsed.meta, parsed.raw, json.subarray(0, h.length), compressed, trailer, FRAME_LEN + h.length + 2, bodyEnd);
  }

  /** Body frames in order; ends after a valid `stop`. Payloads are skipped unless read with `pieces`. */
  async *frames(): AsyncGenerator<BodyFrame> {
    if (this.compressed && !this.trailer) throw new Error("stream opened without its trailer");
    try {
      yield* this.walk();
    } finally {
      const w = this.windowBacking;
      this.windowBacking = null;
      this.window = Buffer.alloc(0);
      if (w && idleWindows.length < IDLE_WINDOWS) idleWindows.push(w);
      // Pieces are valid until the next one is asked for: none is in use once the walk ends.
      giveLarge("compressed", this.compressedBuf);
      giveLarge("decoded", this.oversize);
      this.compressedBuf = null;
      this.oversize = null;
    }
  }

  private async *walk(): AsyncGenerator<BodyFrame> {
    let pos = this.bodyStart;
    let nextStart = 0;
    let dataIndex = 0;
    let dataSize = 0;
    for (;;) {
      if (pos + FRAME_LEN > this.bodyEnd) this.fail(pos, "stream ends without a stop frame (truncated file?)");
      const h = await this.header(pos);
      if (h.kind === "stop") {
        if (h.start !== 0 || h.length !== 0) this.fail(pos, "malformed stop frame");
        const end = pos + FRAME_LEN;
        if (end !== this.bodyEnd) this.fail(end, `${this.bodyEnd - end} unexpected bytes after the stop frame`);
        if (this.trailer && dataIndex !== this.trailer.length) {
          this.fail(pos, `compression trailer lists ${this.trailer.length} data frames, stream has ${dataIndex}`);
        }
        if (dataSize !== this.meta.dataSize) {
          this.fail(pos, `data size mismatch: frames hold ${dataSize} bytes, metadata says ${this.meta.dataSize}`);
        }
        return;
      }
      if (h.kind !== "data" && h.kind !== "zero") this.fail(pos, `unexpected "${h.kind}" frame in stream body`);
      if (h.length === 0) this.fail(pos, `empty ${h.kind} frame`);
      if (h.start < nextStart) this.fail(pos, `frames out of order: ${h.kind} at disk offset ${h.start} before ${nextStart}`);
      if (h.start + h.length > this.meta.virtualSize) {
        this.fail(pos, `${h.kind} frame [${h.start}, +${h.length}) exceeds the disk size ${this.meta.virtualSize}`);
      }
      nextStart = h.start + h.length;
      if (h.kind === "zero") {
        pos += FRAME_LEN;
        yield { kind: "zero", start: h.start, length: h.length };
        continue;
      }
      let payloadBytes = h.length;
      if (this.trailer) {
        const entry = this.trailer[dataIndex];
        if (entry === undefined) this.fail(pos, `data frame ${dataIndex} has no compression trailer entry`);
        payloadBytes = typeof entry === "number" ? entry : entry!.reduce((a, b) => a + b, 0);
      }
      const payload = pos + FRAME_LEN;
      if (payload + payloadBytes + 2 > this.bodyEnd) this.fail(pos, `data frame payload of ${payloadBytes} bytes runs past the end of the stream`);
      const term = await this.peek(payload + payloadBytes, 2);
      if (term[0] !== 0x0d || term[1] !== 0x0a) this.fail(payload + payloadBytes, "data payload not followed by CR LF");
      dataSize += h.length;
      yield { kind: "data", start: h.start, length: h.length, payload, payloadBytes, index: dataIndex++ };
      pos = payload + payloadBytes + 2;
    }
  }

  /**
   * The decoded bytes of a data frame, in pieces. Uncompressed pieces are at most one pool
   * buffer; compressed pieces are one lz4 frame each. Give each `buffer` back to the pool.
   */
  async *pieces(frame: DataFrame, pool: BufferPool): AsyncGenerator<DataPiece> {
    if (!this.compressed) {
      let done = 0;
      while (done < frame.length) {
        const n = Math.min(pool.bufferSize, frame.length - done);
        const buffer = await pool.acquire();
        try {
          await readExactly(this.source, buffer, 0, n, frame.payload + done);
        } catch (e) {
          pool.release(buffer);
          throw this.wrap(e, frame.payload + done);
        }
        yield { offset: frame.start + done, data: buffer.subarray(0, n), buffer };
        done += n;
      }
      return;
    }
    const entry = this.trailer![frame.index]!;
    const sizes = typeof entry === "number" ? [entry] : entry;
    let pos = frame.payload;
    let done = 0;
    for (const size of sizes) {
      const remaining = frame.length - done;
      if (remaining <= 0) this.fail(pos, `data frame at disk offset ${frame.start} has more lz4 frames than data`);
      const input = this.compressedInput(size, pos);
      try {
        await readExactly(this.source, input, 0, size, pos);
      } catch (e) {
        throw this.wrap(e, pos);
      }
      const expected = lz4ContentSize(input) ?? Math.min(remaining, MAX_LZ4_PIECE);
      if (expected > remaining) this.fail(pos, `lz4 frame holds ${expected} bytes, only ${remaining} left in the data frame`);
      if (expected > MAX_LZ4_PIECE) this.fail(pos, `lz4 frame of ${expected} bytes is larger than supported`);
      const own = expected > pool.bufferSize;
      const buffer = own ? this.oversizeBuffer(expected) : await pool.acquire();
      let n: number;
      try {
        n = await lz4Decompress(input, buffer.subarray(0, expected));
      } catch (e) {
        if (!own) pool.release(buffer);
        this.fail(pos, (e as Error).message);
      }
      yield { offset: frame.start + done, data: buffer.subarray(0, n!), buffer: own ? null : buffer };
      done += n!;
      pos += size;
    }
    if (done !== frame.length) this.fail(frame.payload, `data frame at disk offset ${frame.start} decodes to ${done} of ${frame.length} bytes`);
  }

  private compressedInput(size: number, pos: number): Buffer {
    // A frame can't be larger than the worst case for the biggest piece we accept.
    if (size > MAX_LZ4_PIECE + MAX_LZ4_PIECE / 128 + 1024) this.fail(pos, `lz4 frame of ${size} bytes is larger than supported`);
    if (!this.compressedBuf || this.compressedBuf.length < size) this.compressedBuf = takeLarge("compressed", size);
    return this.compressedBuf.subarray(0, size);
  }

  private oversizeBuffer(size: number): Buffer {
    if (!this.oversize || this.oversize.length < size) this.oversize = takeLarge("decoded", size);
    return this.oversize;
  }

  private async header(pos: number): Promise<FrameHeader> {
    const bytes = await this.peek(pos, FRAME_LEN);
    return parseHeader(bytes, 0, this.source.name, pos);
  }

  /**
   * `length` bytes at `pos` through a read-ahead window (headers and terminators are tiny).
   * Plain files are read with a blocking pread: a chain of a full and 30 incs has ~2000 frames,
   * and a trip through libuv's pool per window took its index 0.18 s instead of 0.03 s.
   */
  private async peek(pos: number, length: number): Promise<Buffer> {
    if (pos < this.windowPos || pos + length > this.windowPos + this.window.length) {
      const n = Math.min(WINDOW, this.source.size - pos);
      const buf = (this.windowBacking ??= idleWindows.pop() ?? Buffer.allocUnsafeSlow(WINDOW));
      let got = 0;
      try {
        if (n > 0) {
          if (this.source.readSync) readExactlySync(this.source, buf, 0, n, pos);
          else await readExactly(this.source, buf, 0, n, pos);
          got = n;
        }
      } catch (e) {
        throw this.wrap(e, pos);
      }
      this.window = buf.subarray(0, got);
      this.windowPos = pos;
      if (got < length) this.fail(pos, "unexpected end of file (truncated?)");
    }
    return this.window.subarray(pos - this.windowPos, pos - this.windowPos + length);
  }

  private wrap(e: unknown, pos: number): Error {
    if (e instanceof ShortReadError) return new StreamFormatError(this.source.name, pos, "unexpected end of file (truncated?)");
    return e as Error;
  }

  private fail(offset: number, reason: string): never {
    throw new StreamFormatError(this.source.name, offset, reason);
  }
}

async function readTrailer(source: RandomAccessSource): Promise<{ trailer: TrailerEntry[]; bodyEnd: number }> {
  const fail = (offset: number, reason: string): never => {
    throw new StreamFormatError(source.name, offset, reason);
  };
  const at = source.size - FRAME_LEN;
  if (at < FRAME_LEN + 2) fail(at, "compressed stream has no compression trailer");
  const tail = Buffer.allocUnsafe(FRAME_LEN);
  await readExactly(source, tail, 0, FRAME_LEN, at);
  if (tail.subarray(0, 5).toString("latin1") !== "comp ") fail(at, "compressed stream has no compression trailer (missing comp frame)");
  const h = parseHeader(tail, 0, source.name, at);
  const jsonAt = at - 2 - h.length;
  if (h.length > 64 * 1024 * 1024 || jsonAt < FRAME_LEN) fail(at, `compression trailer length ${h.length} exceeds the file`);
  const json = Buffer.allocUnsafe(h.length + 2);
  await readExactly(source, json, 0, json.length, jsonAt);
  if (json[h.length] !== 0x0d || json[h.length + 1] !== 0x0a) fail(at - 2, "compression trailer not followed by CR LF");
  try {
    return { trailer: parseTrailer(json.subarray(0, h.length).toString("latin1")), bodyEnd: jsonAt };
  } catch (e) {
    if (e instanceof TrailerError) return fail(jsonAt, e.message);
    throw e;
  }
}
