/**
 * One socket (unix or TCP, optionally upgraded to TLS) and the routing of incoming bytes
 * to the current consumer ("sink").
 *
 * Plain sockets use `net.Socket`'s `onread` option with a buffer *generator*: before each
 * read the sink may hand out a slice of a caller's destination buffer (a READ payload), so
 * the kernel copies the data straight where it belongs; otherwise one reused scratch buffer
 * takes the bytes. No per-chunk allocation either way. TLS sockets deliver `data` events.
 */
import net from "node:net";
import type tls from "node:tls";
import { NbdConnectAborted, NbdConnectionError } from "./errors.js";
import { native } from "../native/index.js";
import { startClientTls, type ClientTlsOptions } from "./tls.js";
import { describeTarget, type NbdTarget } from "./uri.js";

export interface ByteSink {
  /** Bytes `data[start..end)` arrived (scratch buffer or a data event); only valid during the call. */
  feed(data: Buffer, start: number, end: number): void;
  /** The buffer the next socket read should fill directly, or null for the scratch buffer. */
  readTarget(): Buffer | null;
  /** `n` bytes were read directly into the buffer last returned by `readTarget()`. */
  filledTarget(n: number): void;
  /**
   * True when the next read should fetch only a reply header (+ data offset), so that the
   * payload behind it can go straight to its destination instead of through the scratch.
   */
  headerRead?(): boolean;
}

/** A structured reply header plus the 8-byte offset of a data chunk. */
export const HEADER_READ = 28;

const NULL_SINK: ByteSink = {
  feed() {},
  readTarget: () => null,
  filledTarget() {},
};

export const DEFAULT_SCRATCH = 256 * 1024;

export interface TransportOptions {
  /** Read with `onread` into caller buffers (default true; ignored once TLS starts). */
  zeroCopy?: boolean;
  /** Scratch buffer size for onread mode. */
  scratchSize?: number;
  /** Fail the connect attempt after this many ms (default 30000). */
  connectTimeoutMs?: number;
  /** Closes the socket at once when fired while connecting (and negotiating, in NbdConnection.open). */
  signal?: AbortSignal;
}

export class Transport {
  private sink: ByteSink = NULL_SINK;
  private readonly scratch: Buffer | null;
  private readonly scratchHead: Buffer | null;
  private current: net.Socket;
  /** The socket as connected (before a TLS upgrade replaces `current`). */
  private readonly tcpSocket: net.Socket;
  private closeHandlers: ((err: Error | null) => void)[] = [];
  private lastError: Error | null = null;
  private closedFlag = false;
  private tlsActive = false;

  private constructor(
    readonly target: NbdTarget,
    zeroCopy: boolean,
    scratchSize: number,
  ) {
    if (zeroCopy) {
      this.scratch = Buffer.allocUnsafeSlow(scratchSize);
      this.scratchHead = this.scratch.subarray(0, HEADER_READ);
      // `onread` is honoured by the Socket constructor (net.connect passes it there).
      const opts: net.SocketConstructorOpts & net.ConnectOpts = {
        onread: {
          buffer: () => this.nextReadBuffer(),
          callback: (n: number, buf: Uint8Array) => {
            this.onRead(n, buf);
            return true;
          },
        },
      };
      this.current = new net.Socket(opts);
    } else {
      this.scratch = null;
      this.scratchHead = null;
      this.current = new net.Socket();
      this.current.on("data", this.onData);
    }
    this.current.setNoDelay?.(true);
    this.tcpSocket = this.current;
    this.watch(this.current);
  }

  /** Opens the socket; rejects with the system error (ENOENT, ECONNREFUSED, ...). */
  static connect(target: NbdTarget, opts: TransportOptions = {}): Promise<Transport> {
    const t = new Transport(target, opts.zeroCopy ?? true, opts.scratchSize ?? DEFAULT_SCRATCH);
    const sock = t.current;
    return new Promise((resolve, reject) => {
      const timeout = opts.connectTimeoutMs ?? 30000;
      const timer = setTimeout(() => {
        sock.destroy(new NbdConnectionError(`Timeout connecting to ${describeTarget(target)}`));
      }, timeout);
      const onAbort = () => sock.destroy(new NbdConnectAborted());
      const onError = (e: Error): void => {
        clearTimeout(timer);
        opts.signal?.removeEventListener("abort", onAbort);
        reject(e);
      };
      if (opts.signal?.aborted) {
        clearTimeout(timer);
        sock.destroy();
        reject(new NbdConnectAborted());
        return;
      }
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      sock.once("error", onError);
      sock.once("connect", () => {
        clearTimeout(timer);
        opts.signal?.removeEventListener("abort", onAbort);
        sock.off("error", onError);
        resolve(t);
      });
      if (target.kind === "unix") sock.connect({ path: target.path });
      else sock.connect({ host: target.host, port: target.port });
    });
  }

  get socket(): net.Socket {
    return this.current;
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  get isTls(): boolean {
    return this.tlsActive;
  }

  setSink(sink: ByteSink | null): void {
    this.sink = sink ?? NULL_SINK;
  }

  /** Called once when the socket is closed; `err` is the first socket error, if any. */
  onClose(handler: (err: Error | null) => void): void {
    if (this.closedFlag) queueMicrotask(() => handler(this.lastError));
    else this.closeHandlers.push(handler);
  }

  write(data: Uint8Array, cb?: (err?: Error | null) => void): boolean {
    return this.current.write(data, cb);
  }

  /**
   * TCP: what arrives next is acknowledged at once, not after Linux's delayed-ACK timer. A server
   * that writes an answer in pieces with Nagle on (qemu's, while negotiating: a meta context
   * reply, then its ACK; GO's info replies) holds each piece until the one before is
   * acknowledged: 40 ms per such option without this (measured against qemu-nbd on loopback,
   * libnbd alike). Not sticky (see tcpQuickAck): called after each send whose answer comes in
   * pieces. Nothing for unix sockets, or when the descriptor is not reachable.
   */
  quickAck(): void {
    if (this.target.kind !== "tcp") return;
    const fd = (this.tcpSocket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
    if (typeof fd === "number" && fd >= 0) native.tcpQuickAck(fd);
  }

  cork(): void {
    this.current.cork();
  }

  uncork(): void {
    this.current.uncork();
  }

  /** Half-close after pending writes; the peer is expected to close. */
  end(): void {
    this.current.end();
  }

  destroy(err?: Error): void {
    if (err && !this.lastError) this.lastError = err;
    this.current.destroy();
  }

  /** STARTTLS: the server has acknowledged; switch this connection to TLS. */
  async startTls(opts: ClientTlsOptions): Promise<void> {
    const plain = this.current;
    plain.off("data", this.onData);
    const host = this.target.kind === "tcp" ? this.target.host : undefined;
    // From here on the plain socket only matters for its close/error events, which the TLS
    // socket reports too.
    this.unwatch(plain);
    plain.on("error", () => {});
    let secure: tls.TLSSocket;
    try {
      secure = await startClientTls(plain, opts, host);
    } catch (e) {
      plain.destroy();
      this.current = plain;
      this.watch(plain);
      throw e;
    }
    this.current = secure;
    this.tlsActive = true;
    secure.on("data", this.onData);
    this.watch(secure);
    if (secure.destroyed) this.handleClose();
  }

  private readonly onSocketError = (e: Error): void => {
    if (!this.lastError) this.lastError = e;
  };

  private readonly onSocketClose = (): void => {
    this.handleClose();
  };

  private watch(s: net.Socket): void {
    s.on("error", this.onSocketError);
    s.on("close", this.onSocketClose);
  }

  private unwatch(s: net.Socket): void {
    s.off("error", this.onSocketError);
    s.off("close", this.onSocketClose);
  }

  private handleClose(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    this.sink = NULL_SINK;
    const hs = this.closeHandlers;
    this.closeHandlers = [];
    for (const h of hs) h(this.lastError);
  }

  private readonly onData = (chunk: Buffer): void => {
    try {
      this.sink.feed(chunk, 0, chunk.length);
    } catch (e) {
      this.destroy(e as Error);
    }
  };

  private nextReadBuffer(): Buffer {
    // Called by net before every read. `scratch` is non-null in onread mode.
    if (!this.closedFlag) {
      try {
        const t = this.sink.readTarget();
        if (t && t.length > 0) return t;
        if (this.sink.headerRead?.()) return this.scratchHead!;
      } catch (e) {
        this.destroy(e as Error);
      }
    }
    return this.scratch!;
  }

  private onRead(n: number, buf: Uint8Array): void {
    if (this.closedFlag) return;
    try {
      if (buf === this.scratch || buf === this.scratchHead) this.sink.feed(this.scratch!, 0, n);
      else this.sink.filledTarget(n);
    } catch (e) {
      this.destroy(e as Error);
    }
  }
}
