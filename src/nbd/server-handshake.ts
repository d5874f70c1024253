/**
 * Server side of option negotiation (fixed newstyle): LIST, STARTTLS, INFO/GO, EXPORT_NAME,
 * STRUCTURED_REPLY, LIST/SET_META_CONTEXT (base:allocation), ABORT. Unknown options get
 * NBD_REP_ERR_UNSUP. Every length from the client is checked before use; oversized option
 * data is skipped, never buffered.
 */
import type { ByteQueue } from "./byte-queue.js";
import type { NbdBackend } from "./backend.js";
import { NbdProtocolError } from "./errors.js";
import {
  BASE_ALLOCATION,
  encodeOptionReply,
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  IHAVEOPT_HI,
  IHAVEOPT_LO,
  Info,
  MAX_STRING_LEN,
  NBDMAGIC_HI,
  NBDMAGIC_LO,
  Opt,
  Rep,
  RepErr,
  TFlag,
  writeU64,
} from "./protocol.js";

export interface ServerExport {
  name: string;
  backend: NbdBackend;
}

export interface ServerHandshakeContext {
  queue: ByteQueue;
  write(b: Buffer): void;
  /** Resolves once the replies written so far are (mostly) flushed: a client that never reads stalls here. */
  drained(): Promise<void>;
  /** Upgrade to TLS after the ACK has been written; the queue then receives decrypted bytes. */
  startTls(): Promise<void>;
  tlsAvailable: boolean;
  tlsRequired: boolean;
  lookup(name: string): ServerExport | null;
  exports(): ServerExport[];
  /** Largest READ/WRITE accepted. */
  maxRequest: number;
}

export interface Session {
  export: ServerExport;
  structured: boolean;
  /** Context id of base:allocation when selected. */
  baseAllocationId: number | null;
  transmissionFlags: number;
  minBlock: number;
  maxBlock: number;
}

export const BASE_ALLOCATION_ID = 1;
const MAX_OPTION_DATA = 64 * 1024;

export function transmissionFlagsFor(b: NbdBackend, structured: boolean): number {
  const writable = !!b.write && b.readOnly !== true;
  let f = TFlag.HAS_FLAGS | TFlag.SEND_CACHE;
  if (!writable) f |= TFlag.READ_ONLY;
  if (b.flush) f |= TFlag.SEND_FLUSH | TFlag.SEND_FUA;
  if (writable) {
    f |= TFlag.SEND_WRITE_ZEROES;
    if (b.writeZeroes) f |= TFlag.SEND_FAST_ZERO;
    if (b.trim) f |= TFlag.SEND_TRIM;
  }
  if (structured) f |= TFlag.SEND_DF;
  if (b.canMultiConn !== false) f |= TFlag.CAN_MULTI_CONN;
  return f;
}

export function blockSizesFor(b: NbdBackend, maxRequest: number): { min: number; pref: number; max: number } {
  const min = b.blockSize?.minimum ?? 1;
  const pref = b.blockSize?.preferred ?? Math.max(4096, min);
  let max = Math.min(b.blockSize?.maximum ?? maxRequest, maxRequest);
  if (max % min !== 0) max -= max % min;
  return { min, pref, max };
}

/** Runs negotiation; resolves with the session, or null when the client aborted. */
export async function serverNegotiate(ctx: ServerHandshakeContext): Promise<Session | null> {
  const q = ctx.queue;
  const greet = Buffer.alloc(18);
  greet.writeUInt32BE(NBDMAGIC_HI, 0);
  greet.writeUInt32BE(NBDMAGIC_LO, 4);
  greet.writeUInt32BE(IHAVEOPT_HI, 8);
  greet.writeUInt32BE(IHAVEOPT_LO, 12);
  greet.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16);
  ctx.write(greet);
  const cflags = (await q.read(4)).readUInt32BE(0);
  if (cflags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) throw new NbdProtocolError(`unknown client flags 0x${cflags.toString(16)}`);
  const noZeroes = (cflags & FLAG_C_NO_ZEROES) !== 0;

  let tls = false;
  let structured = false;
  let contextExport: string | null = null;
  let baseSelected = false;

  const reply = (opt: number, type: number, data?: Buffer): void => ctx.write(encodeOptionReply(opt, type, data));
  const replyErr = (opt: number, type: number, message: string): void => reply(opt, type, Buffer.from(message, "utf8"));

  for (;;) {
    await ctx.drained();
    const h = await q.read(16);
    if (h.readUInt32BE(0) !== IHAVEOPT_HI || h.readUInt32BE(4) !== IHAVEOPT_LO) throw new NbdProtocolError("bad option magic");
    const opt = h.readUInt32BE(8);
    const len = h.readUInt32BE(12);

    if (opt === Opt.EXPORT_NAME) {
      // No error reply is possible: refusal means closing.
      if (len > MAX_STRING_LEN) throw new NbdProtocolError("export name too long");
      const name = (await q.read(len)).toString("utf8");
      if (ctx.tlsRequired && !tls) throw new NbdProtocolError("NBD_OPT_EXPORT_NAME without TLS");
      const exp = ctx.lookup(name);
      if (!exp) throw new NbdProtocolError(`unknown export '${name}'`);
      const tflags = transmissionFlagsFor(exp.backend, structured);
      const b = Buffer.alloc(noZeroes ? 10 : 134);
      writeU64(b, exp.backend.size, 0);
      b.writeUInt16BE(tflags, 8);
      ctx.write(b);
      const bs = blockSizesFor(exp.backend, ctx.maxRequest);
      return {
        export: exp,
        structured,
        baseAllocationId: baseSelected && contextExport === name ? BASE_ALLOCATION_ID : null,
        transmissionFlags: tflags,
        minBlock: bs.min,
        maxBlock: bs.max,
      };
    }

    if (len > MAX_OPTION_DATA) {
      await q.skip(len);
      replyErr(opt, RepErr.TOO_BIG, "option data too large");
      continue;
    }
    const data = len > 0 ? await q.read(len) : Buffer.alloc(0);

    if (ctx.tlsRequired && !tls && opt !== Opt.STARTTLS && opt !== Opt.ABORT) {
      replyErr(opt, RepErr.TLS_REQD, "TLS is required");
      continue;
    }

    switch (opt) {
      case Opt.ABORT:
        reply(opt, Rep.ACK);
        return null;

      case Opt.LIST: {
        if (len !== 0) {
          replyErr(opt, RepErr.INVALID, "NBD_OPT_LIST takes no data");
          break;
        }
        for (const e of ctx.exports()) {
          const name = Buffer.from(e.name, "utf8");
          const desc = Buffer.from(e.backend.description ?? "", "utf8");
          const b = Buffer.alloc(4 + name.length + desc.length);
          b.writeUInt32BE(name.length, 0);
          name.copy(b, 4);
          desc.copy(b, 4 + name.length);
          reply(opt, Rep.SERVER, b);
        }
        reply(opt, Rep.ACK);
        break;
      }

      case Opt.STARTTLS: {
        if (len !== 0) {
          replyErr(opt, RepErr.INVALID, "NBD_OPT_STARTTLS takes no data");
          break;
        }
        if (tls) {
          replyErr(opt, RepErr.INVALID, "TLS already negotiated");
          break;
        }
        if (!ctx.tlsAvailable) {
          replyErr(opt, RepErr.UNSUP, "TLS not configured");
          break;
        }
        reply(opt, Rep.ACK);
        if (q.buffered > 0) throw new NbdProtocolError("client sent data after NBD_OPT_STARTTLS");
        await ctx.startTls();
        tls = true;
        structured = false;
        contextExport = null;
        baseSelected = false;
        break;
      }

      case Opt.INFO:
      case Opt.GO: {
        const parsed = parseInfoRequest(data);
        if (!parsed) {
          replyErr(opt, RepErr.INVALID, "malformed NBD_OPT_INFO/GO request");
          break;
        }
        const exp = ctx.lookup(parsed.name);
        if (!exp) {
          replyErr(opt, RepErr.UNKNOWN, `export '${parsed.name}' not available`);
          break;
        }
        const tflags = transmissionFlagsFor(exp.backend, structured);
        const info = Buffer.alloc(12);
        info.writeUInt16BE(Info.EXPORT, 0);
        writeU64(info, exp.backend.size, 2);
        info.writeUInt16BE(tflags, 10);
        reply(opt, Rep.INFO, info);
        if (parsed.infos.includes(Info.NAME)) {
          const n = Buffer.from(exp.name, "utf8");
          const b = Buffer.alloc(2 + n.length);
          b.writeUInt16BE(Info.NAME, 0);
          n.copy(b, 2);
          reply(opt, Rep.INFO, b);
        }
        if (parsed.infos.includes(Info.DESCRIPTION) && exp.backend.description) {
          const n = Buffer.from(exp.backend.description, "utf8").subarray(0, MAX_STRING_LEN);
          const b = Buffer.alloc(2 + n.length);
          b.writeUInt16BE(Info.DESCRIPTION, 0);
          n.copy(b, 2);
          reply(opt, Rep.INFO, b);
        }
        const bs = blockSizesFor(exp.backend, ctx.maxRequest);
        const bsb = Buffer.alloc(14);
        bsb.writeUInt16BE(Info.BLOCK_SIZE, 0);
        bsb.writeUInt32BE(bs.min, 2);
        bsb.writeUInt32BE(bs.pref, 6);
        bsb.writeUInt32BE(bs.max, 10);
        reply(opt, Rep.INFO, bsb);
        reply(opt, Rep.ACK);
        if (opt === Opt.GO) {
          return {
            export: exp,
            structured,
            baseAllocationId: baseSelected && contextExport === parsed.name ? BASE_ALLOCATION_ID : null,
            transmissionFlags: tflags,
            minBlock: bs.min,
            maxBlock: bs.max,
          };
        }
        break;
      }

      case Opt.STRUCTURED_REPLY:
        if (len !== 0) {
          replyErr(opt, RepErr.INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data");
          break;
        }
        structured = true;
        reply(opt, Rep.ACK);
        break;

      case Opt.LIST_META_CONTEXT:
      case Opt.SET_META_CONTEXT: {
        if (opt === Opt.SET_META_CONTEXT) {
          // Replaces the previous selection, even when it fails.
          baseSelected = false;
          contextExport = null;
        }
        if (!structured) {
          replyErr(opt, RepErr.INVALID, "structured replies must be negotiated first");
          break;
        }
        const parsed = parseMetaContextRequest(data);
        if (!parsed) {
          replyErr(opt, RepErr.INVALID, "malformed meta context request");
          break;
        }
        const exp = ctx.lookup(parsed.name);
        if (!exp) {
          replyErr(opt, RepErr.UNKNOWN, `export '${parsed.name}' not available`);
          break;
        }
        const ctxReply = (id: number): void => {
          const n = Buffer.from(BASE_ALLOCATION, "utf8");
          const b = Buffer.alloc(4 + n.length);
          b.writeUInt32BE(id, 0);
          n.copy(b, 4);
          reply(opt, Rep.META_CONTEXT, b);
        };
        if (opt === Opt.SET_META_CONTEXT) {
          if (parsed.queries.includes(BASE_ALLOCATION)) {
            baseSelected = true;
            contextExport = parsed.name;
            ctxReply(BASE_ALLOCATION_ID);
          }
        } else {
          const all = parsed.queries.length === 0;
          if (all || parsed.queries.some((x) => x === "base:" || x === BASE_ALLOCATION)) ctxReply(0);
        }
        reply(opt, Rep.ACK);
        break;
      }

      default:
        replyErr(opt, RepErr.UNSUP, `option ${opt} not supported`);
    }
  }
}

function parseInfoRequest(d: Buffer): { name: string; infos: number[] } | null {
  if (d.length < 6) return null;
  const nl = d.readUInt32BE(0);
  if (nl > d.length - 6 || nl > MAX_STRING_LEN) return null;
  const n = d.readUInt16BE(4 + nl);
  if (d.length !== 4 + nl + 2 + 2 * n) return null;
  const infos: number[] = [];
  for (let i = 0; i < n; i++) infos.push(d.readUInt16BE(6 + nl + 2 * i));
  return { name: d.toString("utf8", 4, 4 + nl), infos };
}

function parseMetaContextRequest(d: Buffer): { name: string; queries: string[] } | null {
  if (d.length < 8) return null;
  const nl = d.readUInt32BE(0);
  if (nl > d.length - 8 || nl > MAX_STRING_LEN) return null;
  const name = d.toString("utf8", 4, 4 + nl);
  let p = 4 + nl;
  const nq = d.readUInt32BE(p);
  p += 4;
  if (nq > (d.length - p) / 4) return null;
  const queries: string[] = [];
  for (let i = 0; i < nq; i++) {
    if (p + 4 > d.length) return null;
    const ql = d.readUInt32BE(p);
    p += 4;
    if (ql > d.length - p || ql > MAX_STRING_LEN) return null;
    queries.push(d.toString("utf8", p, p + ql));
    p += ql;
  }
  if (p !== d.length) return null;
  return { name, queries };
}
