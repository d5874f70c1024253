/**
 * qemu-nbd as a child process (not --fork): it serves one client and exits when that client
 * disconnects, so it never outlives us by more than the connection. Offline backups read an
 * image through it (with a persistent bitmap for inc/diff); restore writes through it.
 */
import type { Host, HostProcess } from "../host/host.js";
import type { NbdTarget } from "../nbd/index.js";

export interface QemuNbdOptions {
  exportName: string;
  image: string;
  format: string;
  /** Unix socket path, or TCP port (with optional bind address). */
  socket?: string;
  port?: number;
  bind?: string;
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

export class QemuNbdServer {
  private constructor(
    readonly options: QemuNbdOptions,
    readonly process: HostProcess,
    readonly target: NbdTarget,
  ) {}

  static start(host: Host, o: QemuNbdOptions): QemuNbdServer {
    const target: NbdTarget = o.socket ? { kind: "unix", path: o.socket } : { kind: "tcp", host: o.bind || "localhost", port: o.port! };
    return new QemuNbdServer(o, host.spawn("qemu-nbd", qemuNbdArgs(o)), target);
  }

  /** Rejects if qemu-nbd ends before `connected` settles (bad image, port in use, …). */
  async guard<T>(connected: Promise<T>): Promise<T> {
    const died = this.process.exited.then((code) => {
      throw new QemuNbdError(`qemu-nbd for [${this.options.image}] exited (${code}): ${this.process.stderrText().trim() || "no message"}`);
    });
    died.catch(() => undefined); // it also ends normally later, after our disconnect
    return Promise.race([connected, died]);
  }

  /** Stops the server (it normally ends by itself after our disconnect). */
  async stop(): Promise<void> {
    const timer = setTimeout(() => this.process.kill("SIGTERM"), 2000);
    try {
      await this.process.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  kill(): void {
    this.process.kill("SIGTERM");
  }
}
