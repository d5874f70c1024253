/**
 * Syslog destination for `virtnbdbackup -L/--syslog`.
 *
 * Upstream uses Python's `SysLogHandler(address="/dev/log")`: one unix
 * *datagram* per record, `<PRI>` + the plain log line (facility user).
 * Node has no unix datagram sockets (`dgram` is UDP only, `net` is stream
 * only, and rsyslog's and journald's /dev/log accept datagrams only), so the
 * records are handed to util-linux `logger` (package bsdutils, essential on
 * Debian) running for the whole run, one line per record on its stdin with the
 * `<PRI>` prefix (`--prio-prefix`). The datagram logger sends differs from
 * Python's only by the RFC 3164 header logger adds in front of our line
 * (`Nov 26 07:20:06 virtnbdbackup: `), which syslog daemons expect anyway.
 *
 * Small writes to a pipe go to the kernel at once, so lines are not lost when
 * the process exits right after logging; `close()` waits for logger to finish.
 * The `SyslogTransport` interface allows a byte-exact native sender later.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { statSync } from "node:fs";
import type { LevelName } from "./levels.js";

export const DEFAULT_SYSLOG_SOCKET = "/dev/log";

/** LOG_USER facility, as Python's SysLogHandler default. */
const FACILITY_USER = 1;
const SEVERITY: Record<LevelName, number> = { DEBUG: 7, INFO: 6, WARNING: 4, ERROR: 3, CRITICAL: 2 };

/** `<PRI>` value for a record of `level` (facility user): INFO → 14, ERROR → 11. */
export function syslogPriority(level: LevelName): number {
  return (FACILITY_USER << 3) | SEVERITY[level];
}

export interface SyslogTransport {
  /** Send one formatted record (may contain newlines). */
  send(level: LevelName, line: string): void;
  /** Finish sending; resolves when everything was handed over. */
  close(): Promise<void>;
}

export interface SyslogOptions {
  /** unix socket path, default `/dev/log` */
  socketPath?: string;
  /** tag logger puts in the header, e.g. the program name */
  tag: string;
  /** called once if logger fails later (e.g. the socket goes away) */
  onError?: (message: string) => void;
  /** the logger executable, default `logger` from PATH */
  loggerBin?: string;
}

/**
 * Open the syslog destination. Throws an Error with a one-line message when
 * the socket does not exist or logger cannot be started.
 */
export function openSyslog(opts: SyslogOptions): SyslogTransport {
  const socketPath = opts.socketPath ?? DEFAULT_SYSLOG_SOCKET;
  let isSocket = false;
  try {
    isSocket = statSync(socketPath).isSocket();
  } catch (e) {
    throw new Error(`Unable to log to syslog socket [${socketPath}]: ${(e as Error).message}`);
  }
  if (!isSocket) throw new Error(`Unable to log to syslog socket [${socketPath}]: not a socket`);
  return new LoggerProcessTransport(socketPath, opts);
}

class LoggerProcessTransport implements SyslogTransport {
  private child: ChildProcess;
  private failed = false;
  private exited: Promise<void>;

  constructor(socketPath: string, private readonly opts: SyslogOptions) {
    this.child = spawn(
      opts.loggerBin ?? "logger",
      ["--socket", socketPath, "--socket-errors=on", "--prio-prefix", "--size", "65536", "--tag", opts.tag],
      { stdio: ["pipe", "ignore", "pipe"] },
    );
    let stderr = "";
    this.child.stderr!.setEncoding("utf8");
    this.child.stderr!.on("data", (d: string) => {
      stderr += d;
    });
    this.exited = new Promise((resolve) => {
      this.child.once("error", (e) => {
        this.fail(`Unable to log to syslog: ${e.message}`);
        resolve();
      });
      this.child.once("close", (code) => {
        if (code !== 0 && code !== null) {
          this.fail(`Unable to log to syslog: logger exited with status ${code}: ${stderr.trim()}`);
        }
        resolve();
      });
    });
    this.child.stdin!.on("error", () => {
      /* reported through "close" */
    });
    // Do not keep the event loop alive just for syslog.
    this.child.unref();
    (this.child.stdin as unknown as { unref?: () => void }).unref?.();
    (this.child.stderr as unknown as { unref?: () => void }).unref?.();
  }

  private fail(message: string): void {
    if (this.failed) return;
    this.failed = true;
    this.opts.onError?.(message);
  }

  send(level: LevelName, line: string): void {
    if (this.failed || !this.child.stdin || this.child.stdin.destroyed) return;
    const pri = `<${syslogPriority(level)}>`;
    // logger reads one record per line: keep the priority on continuation lines
    const text = line
      .split("\n")
      .map((l) => pri + l)
      .join("\n");
    this.child.stdin.write(text + "\n");
  }

  async close(): Promise<void> {
    if (this.child.stdin && !this.child.stdin.destroyed) this.child.stdin.end();
    // Keep the event loop alive while waiting (bounded), or code awaiting
    // close() would never run once nothing else is pending.
    this.child.ref();
    (this.child.stderr as unknown as { ref?: () => void }).ref?.();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, 2000);
    });
    await Promise.race([this.exited, timeout]);
    if (timer) clearTimeout(timer);
  }
}
