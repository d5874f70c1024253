/** lz4 frames as the stream format uses them (one per data piece), over the native addon. */
import { native } from "../native/index.js";

const MAGIC = 0x184d2204;

/** Content size from an lz4 frame header, or null when the frame does not carry one. */
export function lz4ContentSize(frame: Uint8Array): number | null {
  if (frame.length < 7) return null;
  const view = Buffer.from(frame.buffer, frame.byteOffset, frame.length);
  if (view.readUInt32LE(0) !== MAGIC) return null;
  const flg = view[4]!;
  if ((flg & 0x08) === 0 || frame.length < 14) return null;
  const size = view.readBigUInt64LE(6);
  return size > BigInt(Number.MAX_SAFE_INTEGER) ? null : Number(size);
}

export const lz4CompressBound = (length: number): number => native.lz4CompressBound(length);

/** Compresses `src` into `dst` (sized by lz4CompressBound) on libuv's pool; returns the frame length. */
export const lz4Compress = (src: Uint8Array, dst: Uint8Array, level: number): Promise<number> =>
  native.lz4CompressAsync(src, dst, level);

/** Decodes one whole frame into `dst` on libuv's pool, verifying its checksums. */
export const lz4Decompress = (src: Uint8Array, dst: Uint8Array): Promise<number> => native.lz4DecompressAsync(src, dst);

interface NativeFrameEncoder {
  begin(dst: Uint8Array, contentSize: number, level: number): number;
  update(src: Uint8Array, dst: Uint8Array): Promise<number>;
  end(dst: Uint8Array): Promise<number>;
  bound(length: number): number;
}

const NativeEncoder = (native as unknown as { Lz4FrameEncoder: new () => NativeFrameEncoder }).Lz4FrameEncoder;

/**
 * Builds one lz4 frame (same parameters as lz4Compress) from input given in parts, so a
 * 32 MiB piece never has to sit in memory whole. Parts are compressed on libuv's pool, one
 * at a time. With a single part the frame is byte-identical to python-lz4's.
 */
export class Lz4FrameEncoder {
  private readonly encoder = new NativeEncoder();
  /** Frame header bytes for a frame of `contentSize` input bytes. */
  begin(dst: Uint8Array, contentSize: number, level: number): number {
    return this.encoder.begin(dst, contentSize, level);
  }
  /** Destination size an `update` of `length` bytes (or `end`) may need. */
  bound(length: number): number {
    return this.encoder.bound(length);
  }
  update(src: Uint8Array, dst: Uint8Array): Promise<number> {
    return this.encoder.update(src, dst);
  }
  end(dst: Uint8Array): Promise<number> {
    return this.encoder.end(dst);
  }
}
