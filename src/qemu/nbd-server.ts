/**
 * qemu-nbd as a child process (not --fork): it serves one client and exits when that client
 * disconnects, so it never outlives us by more than the connection. Offline backups read an
 * image through it (with a persistent bitmap for inc/diff); restore writes through it.
 */
import { rmSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import type { Host, HostProcess } from "../host/host.js";
import {
  formatNbdUri,
  NbdClient,
  NbdConnectionError,
  NbdConnectAborted,
  NbdConnectionTimeout,
  resolveConnectOptions,
  type ConnectOptions,
  type NbdTarget,
} from "../nbd/index.js";
import { explainConnectError, TCP_CONNECT_TIMEOUT_MS, TCP_HANDSHAKE_TIMEOUT_MS } from "./nbd-tcp.js";

export interface QemuNbdOptions {
  exportName: string;
  image: string;
  format: string;
  /** Unix socket path, or TCP port (with optional bind address). */
  socket?: string;
  port?: number;
  bind?: string;
  /** TCP: the address our client connects to (default: the bind address, else localhost). */
  connectHost?: string;
  readOnly?: boolean;
  /** Export this persistent bitmap as `qemu:dirty-bitmap:<name>`. */
  bitmap?: string;
  /** `--discard=unmap` for restore targets. */
  discard?: boolean;
  /** Write through qemu's compress driver (restore `--compress`). */
  compressDriver?: boolean;
  /** TLS credentials directory (x509, qemu layout). */
  tlsDir?: string;
  /** Allow several connections (multi-conn). */
  shared?: number;
}

export function qemuNbdArgs(o: QemuNbdOptions): string[] {
  const args: string[] = [];
  if (o.readOnly) args.push("-r");
  if (o.discard) args.push("--discard=unmap");
  args.push("-x", o.exportName);
  if (o.compressDriver) {
    args.push("--image-opts", `driver=compress,file.driver=${o.format},file.file.driver=file,file.file.filename=${o.image}`);
  } else {
    args.push(`--format=${o.format}`, o.image);
  }
  if (o.socket) args.push("-k", o.socket);
  else if (o.port !== undefined) {
    args.push("-p", String(o.port));
    if (o.bind) args.push("-b", o.bind);
  }
  if (o.shared && o.shared > 1) args.push("-e", String(o.shared));
  if (o.bitmap) args.push(`--bitmap=${o.bitmap}`);
  if (o.tlsDir) args.push("--object", `tls-creds-x509,id=tls0,endpoint=server,dir=${o.tlsDir},verify-peer=false`, "--tls-creds", "tls0");
  return args;
}

export class QemuNbdError extends Error {}

/** How long qemu-nbd may take to start listening. */
const START_TIMEOUT_MS = 30_000;

/** The socket is not there or not accepting yet (qemu-nbd still starting). */
function notListeningYet(e: unknown): boolean {
  if (e instanceof NbdConnectionError) return true;
  const code = (e as { code?: unknown } | null)?.code;
  return code === "ENOENT" || code === "ECONNREFUSED" || code === "ECONNRESET" || code === "EPIPE" || code === "EAGAIN";
}

export class QemuNbdServer {
  private constructor(
    readonly options: QemuNbdOptions,
    readonly process: HostProcess,
    readonly target: NbdTarget,
    private readonly host: Host,
  ) {}

  static start(host: Host, o: QemuNbdOptions): QemuNbdServer {
    const target: NbdTarget = o.socket ? { kind: "unix", path: o.socket } : { kind: "tcp", host: o.connectHost || o.bind || "localhost", port: o.port! };
    return new QemuNbdServer(o, host.spawn("qemu-nbd", qemuNbdArgs(o)), target, host);
  }

  /**
   * Connects as soon as the server listens. If qemu-nbd exits first (missing bitmap, locked or
   * bad image, …) this rejects at once with its message; no attempt outlives the call.
   */
  async connect(opts: Omit<ConnectOptions, "target" | "uri" | "attempts" | "intervalMs">): Promise<NbdClient> {
    const tcp = this.target.kind === "tcp";
    const co = resolveConnectOptions({
      ...(tcp ? { connectTimeoutMs: TCP_CONNECT_TIMEOUT_MS, handshakeTimeoutMs: TCP_HANDSHAKE_TIMEOUT_MS } : {}),
      ...opts,
      target: this.target,
    });
    const log = opts.log ?? (() => undefined);
    const uri = formatNbdUri(co.target, co.exportName, !!co.tls);
    log("info", `Waiting until NBD server at [${uri}] is up.`);
    const deadline = Date.now() + START_TIMEOUT_MS;
    let abandoned = false;
    const attempts = (async () => {
      let lastError: unknown = null;
      for (let retry = 0; ; retry++) {
        if (abandoned) throw new QemuNbdError("abandoned");
        if (opts.signal?.aborted) throw new NbdConnectAborted();
        if (Date.now() > deadline) throw new NbdConnectionTimeout(undefined, lastError);
        if (retry > 0) await sleep(20);
        if (this.target.kind === "unix" && !(await this.host.exists(this.target.path))) continue;
        try {
          const client = await NbdClient.open(co);
          if (abandoned) {
            client.close();
            throw new QemuNbdError("abandoned");
          }
          log("info", "Connection to NBD backend succeeded.");
          return client;
        } catch (e) {
          // TCP (a remote qemu-nbd): only "refused" means not listening yet; an address that does
          // not answer or a TLS failure will not get better by waiting.
          if (tcp && (e as { code?: unknown }).code !== "ECONNREFUSED") {
            const explained = explainConnectError(e, uri, co.tls?.certDir ?? null);
            if (explained) throw explained;
            // Something else may hold the port while qemu-nbd fails to bind: its message is the
            // one to report (guard() wins the race when it exits now).
            await Promise.race([this.process.exited, sleep(1000)]);
            throw e;
          }
          if (!tcp && !notListeningYet(e)) throw e;
          lastError = e;
        }
      }
    })();
    attempts.catch(() => undefined); // settles after guard() when qemu-nbd died first
    try {
      return await this.guard(attempts);
    } finally {
      abandoned = true;
    }
  }

  /** Rejects if qemu-nbd ends before `connected` settles (bad image, port in use, …). */
  async guard<T>(connected: Promise<T>): Promise<T> {
    const died = this.process.exited.then((code) => {
      const where = this.host.remote ? ` on [${this.host.name}]` : "";
      throw new QemuNbdError(`qemu-nbd for [${this.options.image}]${where} exited (${code}): ${this.process.stderrText().trim() || "no message"}`);
    });
    died.catch(() => undefined); // it also ends normally later, after our disconnect
    return Promise.race([connected, died]);
  }

  /**
   * Stops the server (it normally ends by itself after our disconnect) and removes its socket,
   * which qemu-nbd leaves behind when it fails after binding.
   */
  async stop(): Promise<void> {
    const timer = setTimeout(() => this.process.kill("SIGTERM"), 2000);
    try {
      await this.process.exited;
    } finally {
      clearTimeout(timer);
    }
    if (this.options.socket) await this.host.remove(this.options.socket).catch(() => undefined);
  }

  /**
   * SIGTERM by default; cleanup after a signal uses SIGKILL (qemu-nbd ignores a SIGTERM during
   * its start-up), which leaves its socket behind: a local one is removed at once (the process
   * is about to exit).
   */
  kill(signal: NodeJS.Signals = "SIGTERM"): void {
    this.process.kill(signal);
    if (signal === "SIGKILL" && this.options.socket && !this.host.remote) rmSync(this.options.socket, { force: true });
  }
}
