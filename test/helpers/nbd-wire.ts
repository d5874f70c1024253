/** Builders for NBD reply byte streams (simple replies and structured chunks), for tests. */
import { encodeStructuredHeader, REPLY_FLAG_DONE, ReplyType, SIMPLE_REPLY_MAGIC, writeU64 } from "../../src/nbd/protocol.js";

export function simple(cookie: number, error: number, data?: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
  h.writeUInt32BE(error, 4);
  writeU64(h, cookie, 8);
  return data ? Buffer.concat([h, data]) : h;
}
export function chunk(cookie: number, type: number, payload: Buffer, done: boolean): Buffer {
  const h = encodeStructuredHeader(done ? REPLY_FLAG_DONE : 0, type, Math.floor(cookie / 2 ** 32), cookie % 2 ** 32, payload.length);
  return Buffer.concat([h, payload]);
}
export function dataChunk(cookie: number, offset: number, data: Buffer, done: boolean): Buffer {
  const p = Buffer.alloc(8);
  writeU64(p, offset, 0);
  return chunk(cookie, ReplyType.OFFSET_DATA, Buffer.concat([p, data]), done);
}
export function holeChunk(cookie: number, offset: number, n: number, done: boolean): Buffer {
  const p = Buffer.alloc(12);
  writeU64(p, offset, 0);
  p.writeUInt32BE(n, 8);
  return chunk(cookie, ReplyType.OFFSET_HOLE, p, done);
}
export function noneChunk(cookie: number): Buffer {
  return chunk(cookie, ReplyType.NONE, Buffer.alloc(0), true);
}
export function statusChunk(cookie: number, ctx: number, desc: [number, number][], done: boolean): Buffer {
  const p = Buffer.alloc(4 + 8 * desc.length);
  p.writeUInt32BE(ctx, 0);
  desc.forEach(([l, f], i) => {
    p.writeUInt32BE(l, 4 + 8 * i);
    p.writeUInt32BE(f, 8 + 8 * i);
  });
  return chunk(cookie, ReplyType.BLOCK_STATUS, p, done);
}
export function errorChunk(cookie: number, errno: number, msg: string, done: boolean, offset?: number): Buffer {
  const m = Buffer.from(msg);
  const p = Buffer.alloc(6 + m.length + (offset === undefined ? 0 : 8));
  p.writeUInt32BE(errno, 0);
  p.writeUInt16BE(m.length, 4);
  m.copy(p, 6);
  if (offset !== undefined) writeU64(p, offset, 6 + m.length);
  return chunk(cookie, offset === undefined ? ReplyType.ERROR : ReplyType.ERROR_OFFSET, p, done);
}

/** Deterministic test pattern. */
export function pattern(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}
