/**
 * One NBD connection in transmission phase: requests go out with fresh cookies, replies are
 * matched by cookie (any order), at most `maxRequestsInFlight` requests and
 * `maxBytesInFlight` payload bytes are outstanding (more wait in a FIFO queue). A lost
 * connection rejects every pending and queued request.
 */
import { describeRequest, NbdConnectAborted, NbdConnectionError, NbdHandshakeError, NbdRequestError } from "./errors.js";
import { negotiate, type ExportInfo, type NegotiateOptions } from "./handshake.js";
import { Cmd, encodeRequest, Errno, REQUEST_HEADER_LEN } from "./protocol.js";
import { newPendingRequest, ReplyParser, type PendingRequest } from "./reply-parser.js";
import { Transport, type TransportOptions } from "./transport.js";
import { describeTarget, type NbdTarget } from "./uri.js";

export interface ConnectionOptions extends TransportOptions {
  /** Give up when option negotiation has not finished after this many ms (default 30000). */
  handshakeTimeoutMs?: number;
  /** Payload bytes (READ + WRITE) outstanding at most; one larger request may go alone. Default 16 MiB. */
  maxBytesInFlight?: number;
  /** Requests outstanding at most. Default 64. */
  maxRequestsInFlight?: number;
}

interface Req extends PendingRequest {
  flags: number;
  data: Buffer | null;
  bytes: number;
  resolve: (r: PendingRequest) => void;
  reject: (e: Error) => void;
}

export const DEFAULT_MAX_BYTES_IN_FLIGHT = 16 * 1024 * 1024;
const BIG_READ = 64 * 1024;
export const DEFAULT_MAX_REQUESTS_IN_FLIGHT = 64;

export class NbdConnection {
  private readonly pending = new Map<number, Req>();
  private queue: Req[] = [];
  private queueHead = 0;
  private nextCookie = 1;
  private inFlightBytes = 0;
  private queuedBytesTotal = 0;
  private failure: string | null = null;
  private protocolFailure: string | null = null;
  private closing = false;
  private idleWaiters: (() => void)[] = [];
  private closedPromise: Promise<void>;
  private readonly parser: ReplyParser;
  /** READs of at least BIG_READ bytes outstanding: worth reading reply headers separately. */
  private bigReads = 0;
  /** Payload bytes outstanding at most (adjustable, e.g. when a pool shares a budget). */
  maxBytesInFlight: number;
  private readonly maxRequests: number;

  private constructor(
    readonly info: ExportInfo,
    private readonly transport: Transport,
    opts: ConnectionOptions,
  ) {
    this.maxBytesInFlight = opts.maxBytesInFlight ?? DEFAULT_MAX_BYTES_IN_FLIGHT;
    this.maxRequests = opts.maxRequestsInFlight ?? DEFAULT_MAX_REQUESTS_IN_FLIGHT;
    this.parser = new ReplyParser(
      {
        lookup: (cookie) => this.pending.get(cookie),
        complete: (req) => this.onComplete(req as Req),
        protocolError: (msg) => {
          this.protocolFailure = `protocol error from NBD server: ${msg}`;
          transport.destroy();
        },
      },
      { structured: info.structuredReplies, contextIds: new Set(info.metaContexts.values()) },
    );
    this.closedPromise = new Promise((resolve) => {
      transport.onClose((err) => {
        this.onClosed(err);
        resolve();
      });
    });
    const parser = this.parser;
    transport.setSink({
      feed: (b, s, e) => parser.feed(b, s, e),
      readTarget: () => parser.readTarget(),
      filledTarget: (n) => parser.filledTarget(n),
      headerRead: () => this.bigReads > 0 && parser.idle,
    });
  }

  /** Connects and negotiates one connection. */
  static async open(target: NbdTarget, neg: NegotiateOptions, opts: ConnectionOptions = {}): Promise<NbdConnection> {
    const signal = opts.signal;
    // TLS sockets deliver data events; onread only applies to plain sockets.
    const transport = await Transport.connect(target, { ...opts, zeroCopy: neg.tls ? false : opts.zeroCopy ?? true });
    const limit = opts.handshakeTimeoutMs ?? 30000;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      transport.destroy();
    }, limit);
    // An abort mid-handshake closes the socket now: qemu must not still be negotiating with us
    // when its NBD server is stopped (qemu 7.2 then hangs in nbd-server-stop).
    const onAbort = () => transport.destroy();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      if (signal?.aborted) throw new NbdConnectAborted();
      const info = await negotiate(transport, neg);
      clearTimeout(timer);
      if (signal?.aborted) throw new NbdConnectAborted();
      if (transport.closed) throw new NbdConnectionError("NBD server closed the connection after negotiation");
      return new NbdConnection(info, transport, opts);
    } catch (e) {
      clearTimeout(timer);
      transport.destroy();
      if (signal?.aborted) throw new NbdConnectAborted();
      if (timedOut) {
        throw new NbdHandshakeError(`NBD server at ${describeTarget(target)} did not complete negotiation within ${limit} ms`);
      }
      throw e;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  get exportName(): string {
    return this.info.exportName;
  }

  /** Payload bytes sent or queued and not answered yet (for load balancing). */
  get load(): number {
    return this.inFlightBytes + this.queuedBytesTotal;
  }

  get requestsOutstanding(): number {
    return this.pending.size + (this.queue.length - this.queueHead);
  }

  get isOpen(): boolean {
    return this.failure === null && !this.closing;
  }

  /**
   * Sends one request (no splitting: the caller respects the block size limits) and resolves
   * with the completed request; rejects with NbdRequestError when the server reports an error.
   */
  request(command: number, flags: number, offset: number, length: number, into: Buffer | null, data: Buffer | null): Promise<PendingRequest> {
    if (this.failure !== null || this.closing) {
      const why = this.failure ?? "connection is being closed";
      return Promise.reject(this.lostError(command, offset, length, why));
    }
    return new Promise((resolve, reject) => {
      const req = newPendingRequest(this.nextCookie++, command, offset, length, into) as Req;
      req.flags = flags;
      req.data = data;
      req.bytes = command === Cmd.READ || command === Cmd.WRITE ? length : 0;
      req.resolve = resolve;
      req.reject = reject;
      if (this.queueHead === this.queue.length && this.canSend(req.bytes)) {
        this.send(req);
      } else {
        this.queue.push(req);
        this.queuedBytesTotal += req.bytes;
      }
    });
  }

  private canSend(bytes: number): boolean {
    if (this.pending.size >= this.maxRequests) return false;
    return this.inFlightBytes === 0 || this.inFlightBytes + bytes <= this.maxBytesInFlight;
  }

  private send(req: Req): void {
    this.pending.set(req.cookie, req);
    this.inFlightBytes += req.bytes;
    if (req.command === Cmd.READ && req.length >= BIG_READ) this.bigReads++;
    const h = Buffer.allocUnsafe(REQUEST_HEADER_LEN);
    encodeRequest(h, 0, req.flags, req.command, req.cookie, req.offset, req.length);
    this.transport.write(h);
    if (req.data) this.transport.write(req.data);
  }

  private pump(): void {
    if (this.queueHead === this.queue.length) return;
    let corked = false;
    while (this.queueHead < this.queue.length && this.failure === null) {
      const req = this.queue[this.queueHead]!;
      if (!this.canSend(req.bytes)) break;
      this.queue[this.queueHead] = undefined as unknown as Req;
      this.queueHead++;
      this.queuedBytesTotal -= req.bytes;
      if (!corked) {
        this.transport.cork();
        corked = true;
      }
      this.send(req);
    }
    if (corked) this.transport.uncork();
    if (this.queueHead === this.queue.length) {
      this.queue = [];
      this.queueHead = 0;
    } else if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.queueHead);
      this.queueHead = 0;
    }
  }

  private onComplete(req: Req): void {
    this.pending.delete(req.cookie);
    this.inFlightBytes -= req.bytes;
    if (req.command === Cmd.READ && req.length >= BIG_READ) this.bigReads--;
    req.data = null;
    if (req.errno !== 0) {
      req.reject(new NbdRequestError(req.command, req.offset, req.length, req.errno, req.errorMessage, this.info.exportName));
      if (req.errno === Errno.ESHUTDOWN && !this.closing) {
        // The server is going away: stop sending and disconnect once everything has answered.
        void this.disconnect().catch(() => {});
      }
    } else {
      req.resolve(req);
    }
    this.pump();
    this.checkIdle();
  }

  private checkIdle(): void {
    if (this.pending.size === 0 && this.queueHead === this.queue.length && this.idleWaiters.length > 0) {
      const ws = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of ws) w();
    }
  }

  private lostError(command: number, offset: number, length: number, why: string): NbdConnectionError {
    return new NbdConnectionError(
      `NBD ${describeRequest(command, offset, length)} failed: ${why} [export '${this.info.exportName}']`,
    );
  }

  private onClosed(err: Error | null): void {
    const reason =
      this.protocolFailure ??
      (err ? `connection to NBD server (${describeTarget(this.transport.target)}) lost: ${err.message}` : null) ??
      (this.closing && this.pending.size === 0
        ? "connection closed"
        : `connection to NBD server (${describeTarget(this.transport.target)}) lost: server closed the connection`);
    this.failure = reason;
    const pend = [...this.pending.values()];
    this.pending.clear();
    const queued = this.queue.slice(this.queueHead);
    this.queue = [];
    this.queueHead = 0;
    this.inFlightBytes = 0;
    this.queuedBytesTotal = 0;
    this.bigReads = 0;
    for (const r of [...pend, ...queued]) r.reject(this.lostError(r.command, r.offset, r.length, reason));
    const ws = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of ws) w();
  }

  /** Waits for all outstanding requests, sends NBD_CMD_DISC and closes. */
  async disconnect(timeoutMs = 5000): Promise<void> {
    if (this.failure !== null) return;
    this.closing = true;
    if (this.pending.size > 0 || this.queueHead < this.queue.length) {
      await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    }
    if (this.failure === null) {
      const h = Buffer.allocUnsafe(REQUEST_HEADER_LEN);
      encodeRequest(h, 0, 0, Cmd.DISC, this.nextCookie++, 0, 0);
      this.transport.write(h);
      this.transport.end();
      const timer = setTimeout(() => this.transport.destroy(), timeoutMs);
      await this.closedPromise;
      clearTimeout(timer);
    }
  }

  /** Hard close: every outstanding request is rejected. */
  destroy(reason = "connection closed by the client"): void {
    if (this.failure === null && !this.protocolFailure) this.protocolFailure = reason;
    this.transport.destroy();
  }

  /** Resolves when the socket has closed. */
  get closed(): Promise<void> {
    return this.closedPromise;
  }
}
