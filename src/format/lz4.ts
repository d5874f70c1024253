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
