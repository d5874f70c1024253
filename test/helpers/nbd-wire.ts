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

/** Server greeting: NBDMAGIC, IHAVEOPT, FIXED_NEWSTYLE | NO_ZEROES. */
export function greeting(): Buffer {
  return Buffer.from("4e42444d41474943" + "49484156454f5054" + "0003", "hex");
}

/** Option reply (magic, option, type, data). */
export function optionReply(opt: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(20);
  h.write("0003e889045565a9", 0, "hex");
  h.writeUInt32BE(opt, 8);
  h.writeUInt32BE(type >>> 0, 12);
  h.writeUInt32BE(data.length, 16);
  return Buffer.concat([h, data]);
}

/**
 * What a well-behaved server sends for our client's default negotiation
 * (STRUCTURED_REPLY, SET_META_CONTEXT base:allocation -> id 1, GO with size and block sizes).
 */
export function serverTranscript(size: number, tflags = 0x1 | 0x4 | 0x8 | 0x100): Buffer {
  const meta = Buffer.alloc(4 + 15);
  meta.writeUInt32BE(1, 0);
  meta.write("base:allocation", 4);
  const exp = Buffer.alloc(12);
  exp.writeUInt16BE(0, 0);
  writeU64(exp, size, 2);
  exp.writeUInt16BE(tflags, 10);
  const bs = Buffer.alloc(14);
  bs.writeUInt16BE(3, 0);
  bs.writeUInt32BE(1, 2);
  bs.writeUInt32BE(4096, 6);
  bs.writeUInt32BE(1 << 20, 10);
  return Buffer.concat([
    greeting(),
    optionReply(8, 1),
    optionReply(10, 4, meta),
    optionReply(10, 1),
    optionReply(7, 3, exp),
    optionReply(7, 3, bs),
    optionReply(7, 1),
  ]);
}

/** Client side of a negotiation with our server: flags, STRUCTURED_REPLY, SET_META_CONTEXT, GO. */
export function clientTranscript(exportName: string): Buffer {
  const opt = (o: number, data: Buffer = Buffer.alloc(0)): Buffer => {
    const h = Buffer.alloc(16);
    h.write("49484156454f5054", 0, "hex");
    h.writeUInt32BE(o, 8);
    h.writeUInt32BE(data.length, 12);
    return Buffer.concat([h, data]);
  };
  const name = Buffer.from(exportName);
  const meta = Buffer.alloc(4 + name.length + 4 + 4 + 15);
  meta.writeUInt32BE(name.length, 0);
  name.copy(meta, 4);
  meta.writeUInt32BE(1, 4 + name.length);
  meta.writeUInt32BE(15, 8 + name.length);
  meta.write("base:allocation", 12 + name.length);
  const go = Buffer.alloc(4 + name.length + 4);
  go.writeUInt32BE(name.length, 0);
  name.copy(go, 4);
  go.writeUInt16BE(1, 4 + name.length);
  go.writeUInt16BE(3, 6 + name.length);
  return Buffer.concat([Buffer.from("00000003", "hex"), opt(8), opt(10, meta), opt(7, go)]);
}

/** A transmission request header (+ payload). */
export function request(type: number, cookie: number, offset: number, length: number, flags = 0, payload?: Buffer): Buffer {
  const h = Buffer.alloc(28);
  h.writeUInt32BE(0x25609513, 0);
  h.writeUInt16BE(flags, 4);
  h.writeUInt16BE(type, 6);
  writeU64(h, cookie, 8);
  writeU64(h, offset, 16);
  h.writeUInt32BE(length >>> 0, 24);
  return payload ? Buffer.concat([h, payload]) : h;
}

/** Deterministic PRNG for fuzzers (xorshift32). */
export function prng(seed: number): (n: number) => number {
  let s = seed >>> 0 || 1;
  return (n: number): number => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s % n;
  };
}

/** Random structural mutations of a byte string: bit flips, byte sets, cuts, inserts, length-field pumping. */
export function mutate(input: Buffer, rnd: (n: number) => number): Buffer {
  let b = Buffer.from(input);
  const ops = 1 + rnd(4);
  for (let i = 0; i < ops; i++) {
    switch (rnd(6)) {
      case 0:
        if (b.length) b[rnd(b.length)]! ^= 1 << rnd(8);
        break;
      case 1:
        if (b.length) b[rnd(b.length)] = [0, 0xff, 0x7f, 0x80][rnd(4)]!;
        break;
      case 2:
        b = b.subarray(0, rnd(b.length + 1));
        break;
      case 3: {
        const at = rnd(b.length + 1);
        const junk = Buffer.alloc(1 + rnd(16));
        for (let j = 0; j < junk.length; j++) junk[j] = rnd(256);
        b = Buffer.concat([b.subarray(0, at), junk, b.subarray(at)]);
        break;
      }
      case 4:
        if (b.length >= 4) b.writeUInt32BE([0xffffffff, 0x7fffffff, 0x10000000, 0][rnd(4)]!, rnd(b.length - 3));
        break;
      case 5: {
        const at = rnd(b.length + 1);
        b = Buffer.concat([b.subarray(0, at), b.subarray(rnd(b.length + 1))]);
        break;
      }
    }
  }
  return b;
}
