/**
 * Client option negotiation (fixed newstyle): greeting, optional STARTTLS, structured
 * replies, meta contexts, then NBD_OPT_GO (falling back to NBD_OPT_EXPORT_NAME for old
 * servers). Also the handshake-only queries NBD_OPT_LIST and NBD_OPT_LIST_META_CONTEXT.
 */
import { ByteQueue } from "./byte-queue.js";
import { NbdConnectionError, NbdHandshakeError, NbdProtocolError } from "./errors.js";
import {
  CLISERV_MAGIC_HI,
  CLISERV_MAGIC_LO,
  DEFAULT_MAX_REQUEST,
  decodeTransmissionFlags,
  encodeInfoRequest,
  encodeMetaContextRequest,
  encodeOption,
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
  optionName,
  readU64,
  Rep,
  REP_FLAG_ERROR,
  RepErr,
  repErrName,
  REPLY_MAGIC_HI,
  REPLY_MAGIC_LO,
  type ExportFlags,
} from "./protocol.js";
import type { ClientTlsOptions } from "./tls.js";
import type { Transport } from "./transport.js";

/** What the client knows about the export once in transmission phase. */
export interface ExportInfo extends ExportFlags {
  exportName: string;
  /** Export size in bytes. */
  size: number;
  /** Raw 16-bit transmission flags. */
  transmissionFlags: number;
  /** Minimum block size (1 when the server did not say). */
  minBlockSize: number;
  /** Preferred block size (4096 when the server did not say). */
  preferredBlockSize: number;
  /** Maximum block size as advertised; 0 when the server did not advertise one. */
  maxBlockSize: number;
  /** Upstream's `maxRequestSize`: the advertised maximum, or 32 MiB when that is 0. */
  maxRequestSize: number;
  structuredReplies: boolean;
  /** Negotiated meta contexts: name -> server-assigned id. */
  metaContexts: Map<string, number>;
  description: string;
  tls: boolean;
  /**
   * The quickest option round trip of the negotiation in ms (sent to first reply byte
   * handled; null when no option was answered): the link's round-trip time, as servers
   * answer options at once. What a reader needs in flight to keep a slow link busy.
   */
  roundTripMs: number | null;
}

export interface NegotiateOptions {
  exportName: string;
  /** Ask for structured replies (default true; needed for block status). */
  structuredReplies?: boolean;
  /** Meta contexts to select, e.g. `base:allocation`, `qemu:dirty-bitmap:backup-sda`. */
  metaContexts?: readonly string[];
  /** Require TLS (STARTTLS) with these credentials. */
  tls?: ClientTlsOptions | null;
}

/** What NBD_OPT_INFO / NBD_OPT_GO tell about an export. */
export type BasicInfo = Omit<ExportInfo, "structuredReplies" | "metaContexts" | "tls" | "roundTripMs">;

/** Option replies are small (names, info records); anything larger is hostile. */
const MAX_OPTION_REPLY = 64 * 1024;

interface OptionReply {
  type: number;
  data: Buffer;
}

/** Step-by-step handshake over a transport whose bytes are routed into a queue. */
export class ClientHandshake {
  readonly queue = new ByteQueue();
  fixedNewstyle = false;
  noZeroes = false;
  tls = false;
  /** See ExportInfo.roundTripMs. */
  roundTripMs: number | null = null;
  /** When the option now waiting for its first reply was sent. */
  private sentAt: number | null = null;

  constructor(private readonly transport: Transport) {
    transport.setSink({
      feed: (b, s, e) => this.queue.push(Buffer.from(b.subarray(s, e))),
      readTarget: () => null,
      filledTarget() {},
    });
    transport.onClose((err) =>
      this.queue.fail(
        new NbdConnectionError(`NBD server closed the connection during negotiation${err ? `: ${err.message}` : ""}`),
      ),
    );
  }

  async greet(): Promise<void> {
    const g = await this.queue.read(16);
    if (g.readUInt32BE(0) !== NBDMAGIC_HI || g.readUInt32BE(4) !== NBDMAGIC_LO) {
      throw new NbdProtocolError("not an NBD server (bad greeting magic)");
    }
    const hi = g.readUInt32BE(8);
    const lo = g.readUInt32BE(12);
    if (hi === CLISERV_MAGIC_HI && lo === CLISERV_MAGIC_LO) {
      throw new NbdProtocolError("NBD server uses oldstyle negotiation, which is not supported");
    }
    if (hi !== IHAVEOPT_HI || lo !== IHAVEOPT_LO) throw new NbdProtocolError("bad newstyle magic from NBD server");
    const flags = (await this.queue.read(2)).readUInt16BE(0);
    this.fixedNewstyle = (flags & FLAG_FIXED_NEWSTYLE) !== 0;
    this.noZeroes = (flags & FLAG_NO_ZEROES) !== 0;
    const c = Buffer.alloc(4);
    c.writeUInt32BE((this.fixedNewstyle ? FLAG_C_FIXED_NEWSTYLE : 0) | (this.noZeroes ? FLAG_C_NO_ZEROES : 0));
    this.transport.write(c);
  }

  private send(opt: number, data?: Buffer): void {
    this.transport.write(encodeOption(opt, data));
    this.transport.quickAck();
    this.sentAt = performance.now();
  }

  private async reply(opt: number): Promise<OptionReply> {
    const h = await this.queue.read(20);
    if (this.sentAt !== null) {
      const ms = performance.now() - this.sentAt;
      this.sentAt = null;
      if (this.roundTripMs === null || ms < this.roundTripMs) this.roundTripMs = ms;
    }
    if (h.readUInt32BE(0) !== REPLY_MAGIC_HI || h.readUInt32BE(4) !== REPLY_MAGIC_LO) {
      throw new NbdProtocolError("bad option reply magic from NBD server");
    }
    const echoed = h.readUInt32BE(8);
    if (echoed !== opt) {
      throw new NbdProtocolError(`NBD server replied to ${optionName(echoed)} while ${optionName(opt)} was pending`);
    }
    const type = h.readUInt32BE(12);
    const len = h.readUInt32BE(16);
    if (len > MAX_OPTION_REPLY) throw new NbdProtocolError(`option reply of ${len} bytes from NBD server (limit ${MAX_OPTION_REPLY})`);
    const data = len > 0 ? await this.queue.read(len) : Buffer.alloc(0);
    return { type, data };
  }

  private errorText(r: OptionReply): string {
    const msg = r.data.length > 0 ? `: ${r.data.toString("utf8", 0, Math.min(r.data.length, MAX_STRING_LEN))}` : "";
    return `${repErrName(r.type)}${msg}`;
  }

  private checkTlsRequired(r: OptionReply): void {
    if (r.type === RepErr.TLS_REQD && !this.tls) {
      throw new NbdHandshakeError("NBD server requires TLS (use --tls / an nbds:// URI)", r.type);
    }
  }

  async startTls(opts: ClientTlsOptions): Promise<void> {
    if (!this.fixedNewstyle) throw new NbdHandshakeError("TLS requested but the NBD server does not support fixed newstyle negotiation");
    this.send(Opt.STARTTLS);
    const r = await this.reply(Opt.STARTTLS);
    if (r.type !== Rep.ACK) {
      throw new NbdHandshakeError(`TLS requested but the NBD server refused STARTTLS (${this.errorText(r)})`, r.type);
    }
    if (this.queue.buffered > 0) throw new NbdProtocolError("NBD server sent data after accepting STARTTLS");
    await this.transport.startTls(opts);
    this.tls = true;
  }

  /** True when the server agreed to structured replies. */
  async structuredReplies(): Promise<boolean> {
    if (!this.fixedNewstyle) return false;
    this.send(Opt.STRUCTURED_REPLY);
    const r = await this.reply(Opt.STRUCTURED_REPLY);
    if (r.type === Rep.ACK) return true;
    this.checkTlsRequired(r);
    if (!(r.type & REP_FLAG_ERROR)) throw new NbdProtocolError(`unexpected reply ${r.type} to NBD_OPT_STRUCTURED_REPLY`);
    return false;
  }

  private async metaContextOption(opt: number, exportName: string, queries: readonly string[]): Promise<Map<string, number>> {
    this.send(opt, encodeMetaContextRequest(exportName, queries));
    const out = new Map<string, number>();
    for (;;) {
      const r = await this.reply(opt);
      if (r.type === Rep.ACK) return out;
      if (r.type === Rep.META_CONTEXT) {
        if (r.data.length < 5 || r.data.length > 4 + MAX_STRING_LEN) throw new NbdProtocolError("bad meta context reply from NBD server");
        out.set(r.data.toString("utf8", 4), r.data.readUInt32BE(0));
        if (out.size > 4096) throw new NbdProtocolError("too many meta contexts from NBD server");
        continue;
      }
      this.checkTlsRequired(r);
      if (r.type & REP_FLAG_ERROR) {
        throw new NbdHandshakeError(`NBD server refused ${optionName(opt)} (${this.errorText(r)})`, r.type);
      }
      throw new NbdProtocolError(`unexpected reply ${r.type} to ${optionName(opt)}`);
    }
  }

  setMetaContexts(exportName: string, contexts: readonly string[]): Promise<Map<string, number>> {
    return this.metaContextOption(Opt.SET_META_CONTEXT, exportName, contexts);
  }

  /** Context names the server offers (ids are meaningless here). */
  async listMetaContexts(exportName: string, queries: readonly string[]): Promise<string[]> {
    return [...(await this.metaContextOption(Opt.LIST_META_CONTEXT, exportName, queries)).keys()];
  }

  /** NBD_OPT_LIST: export names with their descriptions. */
  async listExports(): Promise<{ name: string; description: string }[]> {
    this.send(Opt.LIST);
    const out: { name: string; description: string }[] = [];
    for (;;) {
      const r = await this.reply(Opt.LIST);
      if (r.type === Rep.ACK) return out;
      if (r.type === Rep.SERVER) {
        if (r.data.length < 4) throw new NbdProtocolError("bad NBD_REP_SERVER reply");
        const n = r.data.readUInt32BE(0);
        if (n > r.data.length - 4) throw new NbdProtocolError("bad NBD_REP_SERVER name length");
        out.push({ name: r.data.toString("utf8", 4, 4 + n), description: r.data.toString("utf8", 4 + n) });
        if (out.length > 65536) throw new NbdProtocolError("too many exports listed by NBD server");
        continue;
      }
      this.checkTlsRequired(r);
      throw new NbdHandshakeError(`NBD server refused NBD_OPT_LIST (${this.errorText(r)})`, r.type);
    }
  }

  /** Ends negotiation without entering transmission (soft disconnect). */
  async abort(): Promise<void> {
    this.send(Opt.ABORT);
    try {
      await Promise.race([this.reply(Opt.ABORT), new Promise((r) => setTimeout(r, 1000))]);
    } catch {
      // The server may just close.
    }
    this.transport.end();
  }

  /** NBD_OPT_GO with a block size request; falls back to NBD_OPT_EXPORT_NAME. */
  go(exportName: string): Promise<BasicInfo> {
    return this.infoOrGo(Opt.GO, exportName);
  }

  /** NBD_OPT_INFO: the export's details without entering transmission (needs fixed newstyle and server support). */
  info(exportName: string): Promise<BasicInfo> {
    if (!this.fixedNewstyle) throw new NbdHandshakeError("NBD_OPT_INFO needs fixed newstyle negotiation");
    return this.infoOrGo(Opt.INFO, exportName);
  }

  private async infoOrGo(opt: number, exportName: string): Promise<BasicInfo> {
    let size = -1;
    let tflags = 0;
    let min = 0;
    let pref = 0;
    let max = 0;
    let description = "";
    if (!this.fixedNewstyle) return this.exportName(exportName);
    this.send(opt, encodeInfoRequest(exportName, [Info.BLOCK_SIZE, Info.DESCRIPTION]));
    for (;;) {
      const r = await this.reply(opt);
      if (r.type === Rep.INFO) {
        if (r.data.length < 2) throw new NbdProtocolError("short NBD_REP_INFO");
        const it = r.data.readUInt16BE(0);
        if (it === Info.EXPORT) {
          if (r.data.length !== 12) throw new NbdProtocolError("bad NBD_INFO_EXPORT length");
          size = readU64(r.data, 2);
          tflags = r.data.readUInt16BE(10);
        } else if (it === Info.BLOCK_SIZE) {
          if (r.data.length !== 14) throw new NbdProtocolError("bad NBD_INFO_BLOCK_SIZE length");
          min = r.data.readUInt32BE(2);
          pref = r.data.readUInt32BE(6);
          max = r.data.readUInt32BE(10);
        } else if (it === Info.DESCRIPTION) {
          description = r.data.toString("utf8", 2, Math.min(r.data.length, 2 + MAX_STRING_LEN));
        }
        continue;
      }
      if (r.type === Rep.ACK) {
        if (size < 0) throw new NbdProtocolError(`NBD server accepted ${optionName(opt)} without sending the export size`);
        return this.finishInfo(exportName, size, tflags, min, pref, max, description);
      }
      if (r.type === RepErr.UNSUP && opt === Opt.GO) return this.exportName(exportName);
      this.checkTlsRequired(r);
      if (r.type === RepErr.UNKNOWN) {
        throw new NbdHandshakeError(`NBD export '${exportName}' not found on server (${this.errorText(r)})`, r.type);
      }
      if (r.type & REP_FLAG_ERROR) {
        throw new NbdHandshakeError(`NBD server refused export '${exportName}' (${this.errorText(r)})`, r.type);
      }
      throw new NbdProtocolError(`unexpected reply ${r.type} to ${optionName(opt)}`);
    }
  }

  private async exportName(exportName: string): Promise<BasicInfo> {
    this.send(Opt.EXPORT_NAME, Buffer.from(exportName, "utf8"));
    let b: Buffer;
    try {
      b = await this.queue.read(10);
    } catch (e) {
      if (e instanceof NbdConnectionError) {
        throw new NbdHandshakeError(`NBD server closed the connection on export '${exportName}' (unknown export?)`);
      }
      throw e;
    }
    if (!this.noZeroes) await this.queue.skip(124);
    return this.finishInfo(exportName, readU64(b, 0), b.readUInt16BE(8), 0, 0, 0, "");
  }

  private finishInfo(
    exportName: string,
    size: number,
    tflags: number,
    min: number,
    pref: number,
    max: number,
    description: string,
  ): BasicInfo {
    if (!Number.isFinite(size)) throw new NbdProtocolError("NBD export size beyond 2^53 bytes");
    if (min !== 0 || pref !== 0 || max !== 0) {
      const pow2 = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;
      if (!pow2(min) || min > 65536 || pref < min || (max !== 0 && max < min)) {
        throw new NbdProtocolError(`invalid block size constraints from NBD server (${min}/${pref}/${max})`);
      }
    }
    return {
      exportName,
      size,
      transmissionFlags: tflags,
      ...decodeTransmissionFlags(tflags),
      minBlockSize: min || 1,
      preferredBlockSize: pref || 4096,
      maxBlockSize: max,
      maxRequestSize: max || DEFAULT_MAX_REQUEST,
      description,
    };
  }
}

/** The full client negotiation; resolves with the export's properties. */
export async function negotiate(transport: Transport, opts: NegotiateOptions): Promise<ExportInfo> {
  const hs = new ClientHandshake(transport);
  await hs.greet();
  if (opts.tls) await hs.startTls(opts.tls);
  const structured = opts.structuredReplies === false ? false : await hs.structuredReplies();
  let contexts = new Map<string, number>();
  const wanted = [...new Set(opts.metaContexts ?? [])];
  if (structured && wanted.length > 0) {
    try {
      contexts = await hs.setMetaContexts(opts.exportName, wanted);
    } catch (e) {
      // No contexts then; NBD_OPT_GO reports an unknown export properly, and block status
      // users check the contexts they need.
      if (!(e instanceof NbdHandshakeError) || e.replyType === RepErr.TLS_REQD) throw e;
    }
  }
  const info = await hs.go(opts.exportName);
  const leftover = hs.queue.drain();
  if (leftover.length > 0) throw new NbdProtocolError("NBD server sent data before any request");
  return { ...info, structuredReplies: structured, metaContexts: contexts, tls: hs.tls, roundTripMs: hs.roundTripMs };
}
