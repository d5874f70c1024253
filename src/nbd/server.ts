/**
 * NBD server: serves `NbdBackend`s on a unix socket or TCP. Fixed newstyle, optional TLS,
 * structured replies (data and hole chunks, error chunks with messages), `base:allocation`,
 * and simple replies for clients that do not negotiate structured replies. Requests are
 * handled concurrently (bounded per connection; reading pauses at the bound) and replies go
 * out as they complete.
 */
import { existsSync, lstatSync, unlinkSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import { type BackendExtent, type NbdBackend, type ReadView } from "./backend.js";
import { BufferRecycler } from "../util/buffer-pool.js";
import { ByteQueue } from "./byte-queue.js";
import { NbdConnectionError } from "./errors.js";
import {
  Cmd,
  CmdFlag,
  commandName,
  DEFAULT_MAX_REQUEST,
  encodeErrorChunk,
  encodeSimpleReply,
  encodeStructuredHeader,
  Errno,
  REPLY_FLAG_DONE,
  ReplyType,
  SIMPLE_REPLY_LEN,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
  STATE_ZERO,
  TFlag,
  toNbdErrno,
  writeU64,
} from "./protocol.js";
import { RequestParser, type ParsedRequest } from "./request-parser.js";
import { serverNegotiate, type ServerExport, type Session } from "./server-handshake.js";
import { loadServerContext, type ServerTlsOptions } from "./tls.js";
import type { NbdTarget } from "./uri.js";

export interface ServerOptions {
  /** Export name -> backend. */
  exports: Record<string, NbdBackend> | Map<string, NbdBackend>;
  /** Export served for the empty name "" when no export is called that. */
  defaultExport?: string;
  /** Offer TLS (STARTTLS); with `required`, refuse everything until TLS is up. */
  tls?: (ServerTlsOptions & { required?: boolean }) | null;
  /** Largest READ/WRITE accepted (default 32 MiB); larger ones fail with EINVAL. */
  maxRequestSize?: number;
  /** Requests handled at once per connection (default 16). */
  maxRequestsPerConnection?: number;
  /** Answer reads of zero ranges with hole chunks (needs `blockStatus`; default true). */
  sparseReads?: boolean;
  /** Connections at once (default 64); more are closed right away. */
  maxConnections?: number;
  /** Diagnostics (connection errors, protocol violations). */
  log?: (message: string) => void;
}

/** Bound on descriptors in one block status reply. */
const MAX_REPLY_EXTENTS = 64 * 1024;
/** A structured OFFSET_DATA chunk's header: 20 bytes, then the 8-byte offset. */
const READ_DATA_HEADER_LEN = 28;
/** Requests handled at once per connection, unless `maxRequestsPerConnection` says otherwise. */
const DEFAULT_REQUESTS_PER_CONNECTION = 16;
/** Replies queued in the socket beyond this stop further request processing until drained. */
const WRITE_HIGH_WATER = 8 * 1024 * 1024;

export class NbdServer {
  private server: net.Server | null = null;
  private readonly conns = new Set<ServerConnection>();
  private readonly exportMap: Map<string, NbdBackend>;
  /**
   * Request payloads and read replies (with room for the reply header in front); as many idle
   * per size as a connection handles requests at once, so a busy client reuses them all
   * instead of leaving a stream of dropped buffers for the garbage collector; a shorter read
   * takes an idle buffer twice its size rather than a new one.
   */
  readonly buffers = new BufferRecycler(DEFAULT_REQUESTS_PER_CONNECTION, READ_DATA_HEADER_LEN, true);
  readonly secureContext: tls.SecureContext | null;
  private boundTarget: NbdTarget | null = null;
  private connectionWaiters: { atMost: number; resolve: () => void }[] = [];

  constructor(readonly opts: ServerOptions) {
    this.exportMap = opts.exports instanceof Map ? new Map(opts.exports) : new Map(Object.entries(opts.exports));
    this.secureContext = opts.tls ? loadServerContext(opts.tls) : null;
  }

  lookup(name: string): ServerExport | null {
    let b = this.exportMap.get(name);
    if (!b && name === "" && this.opts.defaultExport !== undefined) {
      b = this.exportMap.get(this.opts.defaultExport);
      if (b) return { name: this.opts.defaultExport, backend: b };
    }
    return b ? { name, backend: b } : null;
  }

  exports(): ServerExport[] {
    return [...this.exportMap].map(([name, backend]) => ({ name, backend }));
  }

  get maxRequest(): number {
    return this.opts.maxRequestSize ?? DEFAULT_MAX_REQUEST;
  }

  get connectionCount(): number {
    return this.conns.size;
  }

  get target(): NbdTarget | null {
    return this.boundTarget;
  }

  /** Resolves once at most `n` connections are open (at once when that is so already). */
  whenConnectionsAtMost(n: number): Promise<void> {
    if (this.conns.size <= n) return Promise.resolve();
    return new Promise((resolve) => this.connectionWaiters.push({ atMost: n, resolve }));
  }

  /** Starts listening; a stale unix socket file at `path` is replaced. */
  listen(addr: { path: string } | { port: number; host?: string }): Promise<NbdTarget> {
    if (this.server) return Promise.reject(new Error("NbdServer: already listening"));
    const srv = net.createServer({ noDelay: true }, (s) => this.accept(s));
    this.server = srv;
    if ("path" in addr && existsSync(addr.path)) {
      const st = lstatSync(addr.path);
      if (st.isSocket()) unlinkSync(addr.path);
    }
    return new Promise((resolve, reject) => {
      srv.once("error", reject);
      const done = (): void => {
        srv.off("error", reject);
        srv.on("error", (e) => this.opts.log?.(`NBD server error: ${e.message}`));
        if ("path" in addr) this.boundTarget = { kind: "unix", path: addr.path };
        else {
          const a = srv.address() as net.AddressInfo;
          this.boundTarget = { kind: "tcp", host: addr.host ?? "127.0.0.1", port: a.port };
        }
        resolve(this.boundTarget);
      };
      if ("path" in addr) srv.listen(addr.path, done);
      else srv.listen(addr.port, addr.host ?? "127.0.0.1", done);
    });
  }

  private accept(s: net.Socket): void {
    s.on("error", () => {});
    if (this.conns.size >= (this.opts.maxConnections ?? 64)) {
      s.destroy();
      return;
    }
    const c = new ServerConnection(this, s);
    this.conns.add(c);
    s.once("close", () => {
      this.conns.delete(c);
      const left = this.connectionWaiters.filter((w) => w.atMost < this.conns.size);
      for (const w of this.connectionWaiters) if (w.atMost >= this.conns.size) w.resolve();
      this.connectionWaiters = left;
    });
    void c.run();
  }

  /** Stops listening and closes every connection. */
  async close(): Promise<void> {
    const srv = this.server;
    this.server = null;
    for (const c of this.conns) c.destroy();
    if (srv) await new Promise<void>((resolve) => srv.close(() => resolve()));
    this.boundTarget = null;
  }
}

class ServerConnection {
  private socket: net.Socket;
  private readonly queue = new ByteQueue();
  private session: Session | null = null;
  private parser: RequestParser | null = null;
  private inflight = 0;
  private paused = false;
  private backlog: Buffer[] = [];
  private disconnecting = false;
  private closed = false;
  private waitingDrain = false;
  private readonly maxInflight: number;

  constructor(
    private readonly server: NbdServer,
    socket: net.Socket,
  ) {
    this.socket = socket;
    this.maxInflight = server.opts.maxRequestsPerConnection ?? DEFAULT_REQUESTS_PER_CONNECTION;
    socket.on("data", this.onHandshakeData);
    socket.once("close", () => {
      this.closed = true;
      this.queue.fail(new NbdConnectionError("client closed the connection"));
    });
  }

  private log(msg: string): void {
    this.server.opts.log?.(msg);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private congested(): boolean {
    return this.socket.writableLength > WRITE_HIGH_WATER;
  }

  private drained(): Promise<void> {
    if (!this.congested() || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.socket.off("drain", done);
        this.socket.off("close", done);
        resolve();
      };
      this.socket.on("drain", done);
      this.socket.on("close", done);
    });
  }

  private readonly onHandshakeData = (chunk: Buffer): void => {
    this.queue.push(chunk);
  };

  async run(): Promise<void> {
    const srv = this.server;
    const tlsOpts = srv.opts.tls;
    try {
      const session = await serverNegotiate({
        queue: this.queue,
        write: (b) => {
          this.socket.write(b);
        },
        drained: () => this.drained(),
        startTls: () => this.startTls(),
        tlsAvailable: srv.secureContext !== null,
        tlsRequired: !!tlsOpts?.required,
        lookup: (n) => srv.lookup(n),
        exports: () => srv.exports(),
        maxRequest: srv.maxRequest,
      });
      if (!session) {
        this.socket.end();
        return;
      }
      this.session = session;
    } catch (e) {
      if (!this.closed) this.log(`NBD negotiation failed: ${(e as Error).message}`);
      this.socket.destroy();
      return;
    }
    const parser = new RequestParser(
      {
        allocPayload: (n) => srv.buffers.acquire(n),
        onRequest: (r) => this.onRequest(r),
        onError: (m) => {
          this.log(`NBD protocol error from client: ${m}`);
          this.socket.destroy();
        },
      },
      srv.maxRequest,
    );
    this.parser = parser;
    this.socket.off("data", this.onHandshakeData);
    this.socket.on("data", this.onData);
    for (const c of this.queue.drain()) this.onData(c);
  }

  private startTls(): Promise<void> {
    const ctx = this.server.secureContext!;
    const verify = this.server.opts.tls?.verifyPeer === true;
    const plain = this.socket;
    plain.off("data", this.onHandshakeData);
    const secure = new tls.TLSSocket(plain, { isServer: true, secureContext: ctx, requestCert: verify, rejectUnauthorized: verify });
    secure.on("error", () => {});
    this.socket = secure;
    return new Promise((resolve, reject) => {
      const onErr = (e: Error): void => reject(e);
      secure.once("error", onErr);
      secure.once("close", () => reject(new NbdConnectionError("connection closed during TLS handshake")));
      secure.once("secure", () => {
        secure.off("error", onErr);
        secure.on("data", this.onHandshakeData);
        secure.once("close", () => {
          this.closed = true;
          this.queue.fail(new NbdConnectionError("client closed the connection"));
        });
        resolve();
      });
    });
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.paused) {
      this.backlog.push(chunk);
      return;
    }
    this.consume(chunk);
  };

  private consume(chunk: Buffer): void {
    const p = this.parser!;
    const used = p.feed(chunk, 0, chunk.length);
    if (used < chunk.length && !p.stopped) {
      this.backlog.unshift(chunk.subarray(used));
      this.pause();
    }
  }

  private pause(): void {
    if (!this.paused) {
      this.paused = true;
      this.socket.pause();
    }
  }

  private maybeResume(): void {
    if (!this.paused || this.inflight >= this.maxInflight || this.disconnecting) return;
    if (this.congested()) {
      // The client is not reading its replies: wait before taking more requests.
      if (!this.waitingDrain) {
        this.waitingDrain = true;
        void this.drained().then(() => {
          this.waitingDrain = false;
          this.maybeResume();
        });
      }
      return;
    }
    this.paused = false;
    while (this.backlog.length > 0 && !this.paused) {
      const c = this.backlog.shift()!;
      this.consume(c);
    }
    if (!this.paused) this.socket.resume();
  }

  private onRequest(r: ParsedRequest): boolean {
    if (r.type === Cmd.DISC) {
      this.disconnecting = true;
      this.parser!.stop();
      this.backlog = [];
      if (this.inflight === 0) this.socket.end();
      return false;
    }
    this.inflight++;
    const atOnce = r.type === Cmd.READ ? this.readAtOnce(r) : false;
    if (atOnce === true) this.requestDone(r, true);
    else {
      (atOnce || this.handle(r))
        .catch((e) => {
          this.log(`NBD request handling failed: ${(e as Error).message}`);
          this.socket.destroy();
        })
        .finally(() => this.requestDone(r, false));
    }
    if (this.inflight >= this.maxInflight || this.congested()) {
      this.pause();
      // Nothing in flight will resume reading when it ends: look again once the parser is out.
      if (this.inflight === 0) queueMicrotask(() => this.maybeResume());
      return false;
    }
    return true;
  }

  /** Bookkeeping after a request; `sync`: it ended inside onRequest (the parser is still feeding). */
  private requestDone(r: ParsedRequest, sync: boolean): void {
    if (r.backing) this.server.buffers.release(r.backing);
    this.inflight--;
    if (this.disconnecting) {
      if (this.inflight === 0) this.socket.end();
    } else if (!sync) this.maybeResume();
  }

  /**
   * A READ of data only (no hole in it), answered with one socket write: the reply header
   * sits in the buffer right before the data. Synchronous backends (a page-cache read) finish
   * here without a promise: true. A backend returning a promise: the promise of the reply.
   * False when the request needs the general path (nothing was read or sent).
   */
  private readAtOnce(r: ParsedRequest): boolean | Promise<void> {
    const s = this.session!;
    const b = s.export.backend;
    if (r.length === 0 || r.length > s.maxBlock || !(r.offset + r.length <= b.size)) return false;
    if ((r.flags & ~this.allowedFlags(Cmd.READ)) !== 0) return false;
    if (this.sparseReads(r)) {
      const ext = b.blockStatus!(r.offset, r.length);
      if (!Array.isArray(ext)) return false;
      for (const e of ext) if (e.flags & STATE_ZERO) return false;
    }
    const room = s.structured ? READ_DATA_HEADER_LEN : SIMPLE_REPLY_LEN;
    if (b.readView) {
      let view: Promise<ReadView> | null;
      try {
        view = b.readView(r.offset, r.length);
      } catch (e) {
        this.sendError(r, toNbdErrno(e), `${commandName(r.type)} failed: ${(e as Error)?.message ?? String(e)}`);
        return true;
      }
      if (view) {
        return view.then(
          (v) => this.sendReadView(r, v, room),
          (e: unknown) => this.sendError(r, toNbdErrno(e), `${commandName(r.type)} failed: ${(e as Error)?.message ?? String(e)}`),
        );
      }
    }
    const buffers = this.server.buffers;
    const buf = buffers.acquire(room + r.length);
    const fail = (e: unknown): void => {
      buffers.release(buf);
      this.sendError(r, toNbdErrno(e), `${commandName(r.type)} failed: ${(e as Error)?.message ?? String(e)}`);
    };
    let pending: Promise<void> | void;
    try {
      pending = b.read(r.offset, r.length, buf.subarray(room, room + r.length));
    } catch (e) {
      fail(e);
      return true;
    }
    if (!pending) {
      this.sendReadReply(r, buf, room);
      return true;
    }
    return pending.then(() => this.sendReadReply(r, buf, room), fail);
  }

  /** Sends the reply header, then the backend's own bytes; they go back to it once written. */
  private sendReadView(r: ParsedRequest, view: ReadView, room: number): void {
    if (this.closed) {
      view.release();
      return;
    }
    const header = Buffer.allocUnsafe(room);
    this.writeReadHeader(r, header, room);
    this.socket.cork();
    this.socket.write(header);
    this.socket.write(view.data, () => view.release());
    this.socket.uncork();
  }

  /** Sends `buf` = header room + the data read; the buffer goes back to the pool once written. */
  private sendReadReply(r: ParsedRequest, buf: Buffer, room: number): void {
    const buffers = this.server.buffers;
    if (this.closed) {
      buffers.release(buf);
      return;
    }
    this.writeReadHeader(r, buf, room);
    this.socket.write(buf.subarray(0, room + r.length), () => buffers.release(buf));
  }

  /** The reply header of a successful READ at the start of `buf` (`room` bytes: structured or simple). */
  private writeReadHeader(r: ParsedRequest, buf: Buffer, room: number): void {
    if (room === READ_DATA_HEADER_LEN) {
      buf.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
      buf.writeUInt16BE(REPLY_FLAG_DONE, 4);
      buf.writeUInt16BE(ReplyType.OFFSET_DATA, 6);
      buf.writeUInt32BE(r.cookieHi >>> 0, 8);
      buf.writeUInt32BE(r.cookieLo >>> 0, 12);
      buf.writeUInt32BE(8 + r.length, 16);
      writeU64(buf, r.offset, 20);
    } else {
      buf.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
      buf.writeUInt32BE(0, 4);
      buf.writeUInt32BE(r.cookieHi >>> 0, 8);
      buf.writeUInt32BE(r.cookieLo >>> 0, 12);
    }
  }

  /** Whether reads of zero ranges are answered with hole chunks. */
  private sparseReads(r: ParsedRequest): boolean {
    const s = this.session!;
    return s.structured && !(r.flags & CmdFlag.DF) && this.server.opts.sparseReads !== false && !!s.export.backend.blockStatus;
  }

  // --- replies ---------------------------------------------------------------------

  private sendOk(r: ParsedRequest): void {
    if (this.closed) return;
    this.socket.write(encodeSimpleReply(r.cookieHi, r.cookieLo, 0));
  }

  private sendError(r: ParsedRequest, errno: number, message: string): void {
    if (this.closed) return;
    if (this.session!.structured) this.socket.write(encodeErrorChunk(r.cookieHi, r.cookieLo, errno, message));
    else this.socket.write(encodeSimpleReply(r.cookieHi, r.cookieLo, errno));
  }

  private allowedFlags(type: number): number {
    const s = this.session!;
    let f = s.transmissionFlags & TFlag.SEND_FUA ? CmdFlag.FUA : 0;
    if (type === Cmd.READ && s.structured) f |= CmdFlag.DF;
    if (type === Cmd.WRITE_ZEROES) {
      f |= CmdFlag.NO_HOLE;
      if (s.transmissionFlags & TFlag.SEND_FAST_ZERO) f |= CmdFlag.FAST_ZERO;
    }
    if (type === Cmd.BLOCK_STATUS) f |= CmdFlag.REQ_ONE;
    return f;
  }

  private async handle(r: ParsedRequest): Promise<void> {
    const s = this.session!;
    const b = s.export.backend;
    const size = b.size;
    const name = commandName(r.type);
    const readOnly = (s.transmissionFlags & TFlag.READ_ONLY) !== 0;
    const end = r.offset + r.length;
    if (r.type > Cmd.BLOCK_STATUS) return this.sendError(r, Errno.EINVAL, `unknown command ${r.type}`);
    if (r.flags & ~this.allowedFlags(r.type)) {
      return this.sendError(r, Errno.EINVAL, `invalid flags 0x${r.flags.toString(16)} for ${name}`);
    }
    try {
      switch (r.type) {
        case Cmd.READ:
          if (r.length > s.maxBlock) return this.sendError(r, Errno.EINVAL, `read of ${r.length} bytes exceeds the maximum ${s.maxBlock}`);
          if (!(end <= size)) return this.sendError(r, Errno.EINVAL, `read beyond the end of the export`);
          return await this.doRead(r);
        case Cmd.WRITE:
          if (r.oversized) return this.sendError(r, Errno.EINVAL, `write of ${r.length} bytes exceeds the maximum ${s.maxBlock}`);
          if (readOnly || !b.write) return this.sendError(r, Errno.EPERM, "export is read-only");
          if (!(end <= size)) return this.sendError(r, Errno.ENOSPC, "write beyond the end of the export");
          if (r.length > 0) await b.write(r.offset, r.payload!);
          if (r.flags & CmdFlag.FUA) await b.flush?.();
          return this.sendOk(r);
        case Cmd.WRITE_ZEROES:
          if (readOnly || !b.write) return this.sendError(r, Errno.EPERM, "export is read-only");
          if (!(end <= size)) return this.sendError(r, Errno.ENOSPC, "write-zeroes beyond the end of the export");
          if (b.writeZeroes) {
            await b.writeZeroes(r.offset, r.length, {
              noHole: (r.flags & CmdFlag.NO_HOLE) !== 0,
              fastZero: (r.flags & CmdFlag.FAST_ZERO) !== 0,
            });
          } else {
            if (r.flags & CmdFlag.FAST_ZERO) return this.sendError(r, Errno.ENOTSUP, "fast zero not supported");
            await this.emulateZero(b, r.offset, r.length);
          }
          if (r.flags & CmdFlag.FUA) await b.flush?.();
          return this.sendOk(r);
        case Cmd.TRIM:
          if (readOnly || !b.write) return this.sendError(r, Errno.EPERM, "export is read-only");
          if (!b.trim) return this.sendError(r, Errno.EINVAL, "trim not supported");
          if (!(end <= size)) return this.sendError(r, Errno.ENOSPC, "trim beyond the end of the export");
          if (r.length > 0) await b.trim(r.offset, r.length);
          if (r.flags & CmdFlag.FUA) await b.flush?.();
          return this.sendOk(r);
        case Cmd.FLUSH:
          if (!b.flush) return this.sendError(r, Errno.EINVAL, "flush not supported");
          await b.flush();
          return this.sendOk(r);
        case Cmd.CACHE:
          if (!(end <= size)) return this.sendError(r, Errno.EINVAL, "cache beyond the end of the export");
          if (b.cache && r.length > 0) await b.cache(r.offset, r.length);
          return this.sendOk(r);
        case Cmd.BLOCK_STATUS:
          if (!s.structured || s.baseAllocationId === null) return this.sendError(r, Errno.EINVAL, "no meta context negotiated");
          if (r.length === 0 || !(end <= size)) return this.sendError(r, Errno.EINVAL, "block status range outside the export");
          return await this.doBlockStatus(r);
        default:
          return this.sendError(r, Errno.EINVAL, `unknown command ${r.type}`);
      }
    } catch (e) {
      return this.sendError(r, toNbdErrno(e), `${name} failed: ${(e as Error)?.message ?? String(e)}`);
    }
  }

  private async emulateZero(b: NbdBackend, offset: number, length: number): Promise<void> {
    const chunk = Math.min(length, 1024 * 1024);
    const zero = this.server.buffers.acquire(chunk);
    try {
      zero.fill(0, 0, chunk);
      for (let pos = 0; pos < length; pos += chunk) {
        const n = Math.min(chunk, length - pos);
        await b.write!(offset + pos, zero.subarray(0, n));
      }
    } finally {
      this.server.buffers.release(zero);
    }
  }

  /** Clean extents within `[offset, offset+length)`: positive lengths, capped, merged. */
  private async extents(b: NbdBackend, offset: number, length: number): Promise<BackendExtent[]> {
    if (!b.blockStatus) return [{ length, flags: 0 }];
    const raw = await b.blockStatus(offset, length);
    const out: BackendExtent[] = [];
    let sum = 0;
    for (const e of raw) {
      if (!(e.length > 0) || !Number.isSafeInteger(e.length)) continue;
      const n = Math.min(e.length, length - sum);
      const flags = e.flags >>> 0;
      const last = out[out.length - 1];
      if (last && last.flags === flags) last.length += n;
      else out.push({ length: n, flags });
      sum += n;
      if (sum >= length || out.length >= MAX_REPLY_EXTENTS) break;
    }
    if (out.length === 0) out.push({ length, flags: 0 });
    return out;
  }

  private async doBlockStatus(r: ParsedRequest): Promise<void> {
    const s = this.session!;
    let ext = await this.extents(s.export.backend, r.offset, Math.min(r.length, 0xffffffff));
    if (r.flags & CmdFlag.REQ_ONE) ext = ext.slice(0, 1);
    if (this.closed) return;
    const len = 4 + 8 * ext.length;
    const h = encodeStructuredHeader(REPLY_FLAG_DONE, ReplyType.BLOCK_STATUS, r.cookieHi, r.cookieLo, len, len);
    h.writeUInt32BE(s.baseAllocationId!, 20);
    let p = 24;
    for (const e of ext) {
      h.writeUInt32BE(e.length, p);
      h.writeUInt32BE(e.flags, p + 4);
      p += 8;
    }
    this.socket.write(h);
  }

  private async doRead(r: ParsedRequest): Promise<void> {
    const s = this.session!;
    const b = s.export.backend;
    if (r.length === 0) {
      if (s.structured) {
        this.socket.write(encodeStructuredHeader(REPLY_FLAG_DONE, ReplyType.NONE, r.cookieHi, r.cookieLo, 0));
      } else this.sendOk(r);
      return;
    }
    const buffers = this.server.buffers;
    const buf = buffers.acquire(r.length);
    let released = false;
    const release = (): void => {
      if (!released) {
        released = true;
        buffers.release(buf);
      }
    };
    try {
      // Pieces: [relStart, length, isHole].
      let pieces: [number, number, boolean][] = [[0, r.length, false]];
      if (this.sparseReads(r)) {
        const ext = await this.extents(b, r.offset, r.length);
        if (ext.some((e) => (e.flags & STATE_ZERO) !== 0)) {
          pieces = [];
          let pos = 0;
          for (const e of ext) {
            const hole = (e.flags & STATE_ZERO) !== 0;
            const last = pieces[pieces.length - 1];
            if (last && last[2] === hole) last[1] += e.length;
            else pieces.push([pos, e.length, hole]);
            pos += e.length;
          }
          if (pos < r.length) {
            const last = pieces[pieces.length - 1]!;
            if (!last[2]) last[1] += r.length - pos;
            else pieces.push([pos, r.length - pos, false]);
          }
        }
      }
      await Promise.all(pieces.filter((p) => !p[2]).map((p) => b.read(r.offset + p[0], p[1], buf.subarray(p[0], p[0] + p[1]))));
      if (this.closed) return;
      const sock = this.socket;
      if (!s.structured) {
        sock.cork();
        sock.write(encodeSimpleReply(r.cookieHi, r.cookieLo, 0));
        released = true;
        sock.write(buf.subarray(0, r.length), () => buffers.release(buf));
        sock.uncork();
        return;
      }
      const out: Buffer[] = [];
      for (let i = 0; i < pieces.length; i++) {
        const [rel, n, hole] = pieces[i]!;
        const flags = i === pieces.length - 1 ? REPLY_FLAG_DONE : 0;
        if (hole) {
          const h = encodeStructuredHeader(flags, ReplyType.OFFSET_HOLE, r.cookieHi, r.cookieLo, 12, 12);
          writeU64(h, r.offset + rel, 20);
          h.writeUInt32BE(n, 28);
          out.push(h);
        } else {
          const h = encodeStructuredHeader(flags, ReplyType.OFFSET_DATA, r.cookieHi, r.cookieLo, 8 + n, 8);
          writeU64(h, r.offset + rel, 20);
          out.push(h, buf.subarray(rel, rel + n));
        }
      }
      // The buffer is free once the socket has taken everything (callback of the last write).
      released = true;
      sock.cork();
      for (let i = 0; i < out.length - 1; i++) sock.write(out[i]!);
      sock.write(out[out.length - 1]!, () => buffers.release(buf));
      sock.uncork();
    } finally {
      release();
    }
  }
}
