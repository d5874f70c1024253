/**
 * The NBD client: one or more connections to one export (more only when the server
 * advertises multi-conn), with requests split at the server's limits and spread over the
 * connections. All data commands, block status, flush and disconnect.
 */
import { DEFAULT_MAX_BYTES_IN_FLIGHT, NbdConnection, type ConnectionOptions } from "./connection.js";
import { NbdError } from "./errors.js";
import type { ExportInfo, NegotiateOptions } from "./handshake.js";
import { Cmd, CmdFlag, MAX_U32 } from "./protocol.js";
import type { ClientTlsOptions } from "./tls.js";
import { formatNbdUri, type NbdTarget } from "./uri.js";
import { awaitLater, InFlight } from "../util/in-flight.js";

export interface ClientOptions extends ConnectionOptions {
  // maxBytesInFlight: for the whole client (split evenly over the connections).
  target: NbdTarget;
  exportName: string;
  metaContexts?: readonly string[];
  /** Require TLS with these credentials. */
  tls?: ClientTlsOptions | null;
  /** Default true. */
  structuredReplies?: boolean;
  /** Connections to open when the server allows multi-conn (default 1). */
  connections?: number;
  /**
   * Open the extra connections beside the first instead of after it (on a slow link a
   * handshake is a few round trips: once, not twice). Only for a server that takes several
   * clients at once, as qemu's NBD server for a backup job does: one serving a client at a time
   * (qemu-nbd's default) could take an extra first and leave the first waiting.
   */
  openTogether?: boolean;
  /**
   * Largest READ/WRITE sent on the wire (default 256 KiB, capped at the server's maximum):
   * bigger calls are split and the pieces run in parallel. Servers (qemu-nbd) answer many
   * mid-sized requests faster than a few huge ones.
   */
  requestSize?: number;
}

export const DEFAULT_REQUEST_SIZE = 256 * 1024;

export interface WriteOptions {
  /** Force unit access: the reply comes after the data is on stable storage. */
  fua?: boolean;
}

export interface ZeroOptions extends WriteOptions {
  /** Do not punch a hole: allocate and write zeroes. */
  noHole?: boolean;
  /** Fail with ENOTSUP instead of falling back to a slow write. */
  fastZero?: boolean;
}

/**
 * One BLOCK_STATUS answer: per negotiated context name, the descriptors as a flat array
 * `[length0, flags0, length1, flags1, …]` starting at the request offset.
 */
export interface BlockStatusReply {
  offset: number;
  contexts: Map<string, number[]>;
}

const WRITE_LIKE = new Set<number>([Cmd.WRITE, Cmd.WRITE_ZEROES, Cmd.TRIM]);

export class NbdClient {
  private readonly writesInFlight = new InFlight();
  private rr = 0;
  private closedFlag = false;
  /**
   * Largest READ/WRITE the server accepts: upstream's `maxRequestSize` (the announced maximum
   * block size, or 32 MiB), capped to 32 bits and aligned. This is what the stream format's
   * chunking follows.
   */
  readonly maxIo: number;
  /** Size of the READ/WRITE requests actually sent (`requestSize` option, at most `maxIo`). */
  readonly requestSize: number;
  /** Largest length for block status / zero / trim / cache requests. */
  readonly maxLength: number;
  private readonly idToName: Map<number, string>[];

  private constructor(
    readonly connections: readonly NbdConnection[],
    readonly target: NbdTarget,
    requestSize: number,
  ) {
    const info = connections[0]!.info;
    const lengthAlign = info.minBlockSize > 1 ? info.minBlockSize : 512;
    this.maxLength = MAX_U32 - lengthAlign + 1;
    const align = (n: number): number => (info.minBlockSize > 1 ? Math.max(info.minBlockSize, n - (n % info.minBlockSize)) : n);
    this.maxIo = align(Math.min(info.maxRequestSize, MAX_U32));
    this.requestSize = Math.min(this.maxIo, align(Math.max(1, requestSize)));
    this.idToName = connections.map((c) => new Map([...c.info.metaContexts].map(([n, id]) => [id, n])));
  }

  /** One connection attempt (plus multi-conn extras). See `connect()` for the retrying helper. */
  static async open(opts: ClientOptions): Promise<NbdClient> {
    const neg: NegotiateOptions = {
      exportName: opts.exportName,
      structuredReplies: opts.structuredReplies ?? true,
      metaContexts: opts.metaContexts ?? [],
      tls: opts.tls ?? null,
    };
    const want = Math.max(1, Math.floor(opts.connections ?? 1));
    // Extras opened together with the first are dropped when it learns that the server allows
    // one connection only.
    const dropExtras = new AbortController();
    const extraOptions = { ...opts, signal: opts.signal ? AbortSignal.any([opts.signal, dropExtras.signal]) : dropExtras.signal };
    // Settled later (a failure meanwhile, e.g. the same TLS refusal as the first's, is no unhandled rejection).
    const openExtras = () => Array.from({ length: want - 1 }, () => awaitLater(NbdConnection.open(opts.target, neg, extraOptions)));
    const destroyAll = (pending: Promise<NbdConnection>[]): Promise<void> =>
      Promise.allSettled(pending).then((rs) => rs.forEach((r) => r.status === "fulfilled" && r.value.destroy()));
    let extras = opts.openTogether ? openExtras() : [];
    let first: NbdConnection;
    try {
      first = await NbdConnection.open(opts.target, neg, opts);
    } catch (e) {
      dropExtras.abort();
      await destroyAll(extras);
      throw e;
    }
    const conns = [first];
    if (!first.info.canMultiConn) {
      dropExtras.abort();
      await destroyAll(extras);
      extras = [];
    } else if (!opts.openTogether) {
      extras = openExtras();
    }
    for (const r of await Promise.allSettled(extras)) {
      if (r.status !== "fulfilled") continue;
      // All connections must see the same export.
      if (r.value.info.size === first.info.size) conns.push(r.value);
      else r.value.destroy();
    }
    // The byte budget is for the whole client; each connection gets its share.
    const budget = opts.maxBytesInFlight ?? DEFAULT_MAX_BYTES_IN_FLIGHT;
    for (const c of conns) c.maxBytesInFlight = Math.ceil(budget / conns.length);
    return new NbdClient(conns, opts.target, opts.requestSize ?? DEFAULT_REQUEST_SIZE);
  }

  get info(): ExportInfo {
    return this.connections[0]!.info;
  }

  get size(): number {
    return this.info.size;
  }

  /** The quickest option round trip of any connection's negotiation, in ms (ExportInfo.roundTripMs). */
  get roundTripMs(): number | null {
    const times = this.connections.map((c) => c.info.roundTripMs).filter((t): t is number => t !== null);
    return times.length > 0 ? Math.min(...times) : null;
  }

  get exportName(): string {
    return this.info.exportName;
  }

  /** `nbd+unix:///sda?socket=…` / `nbd://host:port/sda`. */
  get uri(): string {
    return formatNbdUri(this.target, this.info.exportName, this.info.tls);
  }

  private pick(): NbdConnection {
    const cs = this.connections;
    if (cs.length === 1) return cs[0]!;
    let best: NbdConnection | null = null;
    for (let i = 0; i < cs.length; i++) {
      const c = cs[(this.rr + i) % cs.length]!;
      if (!c.isOpen) continue;
      if (best === null || c.load < best.load) best = c;
    }
    this.rr = (this.rr + 1) % cs.length;
    return best ?? cs[0]!;
  }

  private check(offset: number, length: number, what: string): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new RangeError(`NBD ${what}: bad offset/length ${offset}/${length}`);
    }
    if (offset + length > this.info.size) {
      throw new RangeError(
        `NBD ${what} at offset ${offset} (${length} bytes) beyond the end of export '${this.exportName}' (${this.info.size} bytes)`,
      );
    }
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.writesInFlight.track(p);
    return p;
  }

  private async split(
    command: number,
    flags: number,
    offset: number,
    length: number,
    piece: number,
    into: Buffer | null,
    data: Buffer | null,
  ): Promise<void> {
    if (length <= piece) {
      const p = this.pick().request(command, flags, offset, length, into, data);
      await (WRITE_LIKE.has(command) ? this.track(p) : p);
      return;
    }
    const ps: Promise<unknown>[] = [];
    for (let pos = 0; pos < length; pos += piece) {
      const n = Math.min(piece, length - pos);
      const p = this.pick().request(
        command,
        flags,
        offset + pos,
        n,
        into ? into.subarray(pos, pos + n) : null,
        data ? data.subarray(pos, pos + n) : null,
      );
      ps.push(WRITE_LIKE.has(command) ? this.track(p) : p);
    }
    // Report the first failure, but only after every piece has settled (buffers are in use).
    const rs = await Promise.allSettled(ps);
    for (const r of rs) if (r.status === "rejected") throw r.reason;
  }

  /**
   * Reads `length` bytes at `offset` into `into` (default: a new buffer) and resolves with
   * the filled part `into.subarray(0, length)`. Large reads are split at the server's
   * maximum block size and run in parallel.
   */
  async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    this.check(offset, length, "read");
    const dest = into ?? Buffer.allocUnsafe(length);
    if (dest.length < length) throw new RangeError(`NBD read: buffer of ${dest.length} bytes for ${length} bytes`);
    const target = dest.length === length ? dest : dest.subarray(0, length);
    if (length === 0) return target;
    await this.split(Cmd.READ, 0, offset, length, this.requestSize, target, null);
    return target;
  }

  private writeFlags(o: WriteOptions | undefined): number {
    return o?.fua && this.info.canFua ? CmdFlag.FUA : 0;
  }

  private needWritable(what: string): void {
    if (this.info.readOnly) throw new NbdError(`NBD ${what}: export '${this.exportName}' is read-only`);
  }

  async write(offset: number, data: Buffer, opts?: WriteOptions): Promise<void> {
    this.check(offset, data.length, "write");
    this.needWritable("write");
    if (data.length === 0) return;
    await this.split(Cmd.WRITE, this.writeFlags(opts), offset, data.length, this.requestSize, null, data);
    if (opts?.fua && !this.info.canFua && this.info.canFlush) await this.flush();
  }

  /** Zeroes a range; without server support it writes zero buffers (unless `fastZero`). */
  async writeZeroes(offset: number, length: number, opts?: ZeroOptions): Promise<void> {
    this.check(offset, length, "write-zeroes");
    this.needWritable("write-zeroes");
    if (length === 0) return;
    if (!this.info.canWriteZeroes) {
      if (opts?.fastZero) throw new NbdError(`NBD write-zeroes: export '${this.exportName}' has no fast zero support`);
      const zero = Buffer.alloc(Math.min(length, this.maxIo, 4 * 1024 * 1024));
      const ps: Promise<void>[] = [];
      for (let pos = 0; pos < length; pos += zero.length) {
        const n = Math.min(zero.length, length - pos);
        ps.push(this.write(offset + pos, n === zero.length ? zero : zero.subarray(0, n), { fua: opts?.fua ?? false }));
      }
      const rs = await Promise.allSettled(ps);
      for (const r of rs) if (r.status === "rejected") throw r.reason;
      return;
    }
    let flags = this.writeFlags(opts);
    if (opts?.noHole) flags |= CmdFlag.NO_HOLE;
    if (opts?.fastZero) {
      if (!this.info.canFastZero) throw new NbdError(`NBD write-zeroes: export '${this.exportName}' has no fast zero support`);
      flags |= CmdFlag.FAST_ZERO;
    }
    await this.split(Cmd.WRITE_ZEROES, flags, offset, length, this.maxLength, null, null);
  }

  async trim(offset: number, length: number, opts?: WriteOptions): Promise<void> {
    this.check(offset, length, "trim");
    this.needWritable("trim");
    if (!this.info.canTrim) throw new NbdError(`NBD trim: export '${this.exportName}' does not support trim`);
    if (length === 0) return;
    await this.split(Cmd.TRIM, this.writeFlags(opts), offset, length, this.maxLength, null, null);
  }

  /** Asks the server to prefetch a range (advisory; a no-op when not advertised). */
  async cache(offset: number, length: number): Promise<void> {
    this.check(offset, length, "cache");
    if (!this.info.canCache || length === 0) return;
    await this.split(Cmd.CACHE, 0, offset, length, this.maxLength, null, null);
  }

  /** Waits for outstanding writes to be answered, then NBD_CMD_FLUSH. */
  async flush(): Promise<void> {
    if (!this.info.canFlush) throw new NbdError(`NBD flush: export '${this.exportName}' does not support flush`);
    await this.writesInFlight.settle();
    await this.pick().request(Cmd.FLUSH, 0, 0, 0, null, null);
  }

  /**
   * One BLOCK_STATUS request for all negotiated contexts. `length` is capped at the largest
   * aligned 32-bit length and at the end of the export.
   */
  async blockStatus(offset: number, length: number, opts?: { reqOne?: boolean }): Promise<BlockStatusReply> {
    if (!this.info.structuredReplies || this.info.metaContexts.size === 0) {
      throw new NbdError(`NBD block-status: no meta context negotiated with export '${this.exportName}'`);
    }
    length = Math.min(length, this.maxLength, this.info.size - offset);
    this.check(offset, length, "block-status");
    if (length === 0) throw new RangeError(`NBD block-status at offset ${offset}: empty range`);
    const conn = this.pick();
    const idx = this.connections.indexOf(conn);
    const req = await conn.request(Cmd.BLOCK_STATUS, opts?.reqOne ? CmdFlag.REQ_ONE : 0, offset, length, null, null);
    const names = this.idToName[idx]!;
    const contexts = new Map<string, number[]>();
    for (const [id, flat] of req.status!) contexts.set(names.get(id)!, flat);
    return { offset, contexts };
  }

  /** Soft disconnect: waits for outstanding requests, sends NBD_CMD_DISC on every connection. */
  async disconnect(): Promise<void> {
    if (this.closedFlag) return;
    this.closedFlag = true;
    await Promise.all(this.connections.map((c) => c.disconnect()));
  }

  /** Hard close; outstanding requests fail. */
  close(): void {
    this.closedFlag = true;
    for (const c of this.connections) c.destroy();
  }
}
