/**
 * Logging in the original tools' format (docs/cli.md, "Log lines").
 *
 *   [%Y-%m-%d %H:%M:%S] LEVEL LOGGER MODULE - FUNCTION [THREAD]: MESSAGE
 *
 * Destinations: the log file (append, plain format, always), stderr (coloured
 * like upstream's colorlog formatter unless `--nocolor`; off with `--quiet`),
 * syslog (`-L` in virtnbdbackup; see ./syslog.ts). WARNING and ERROR/CRITICAL
 * records are counted for `--strict` and the final exit code, and handed to the
 * `onRecord` listeners (the `--json` event stream, ./events.ts); with events on
 * stderr, `setStderrLines(false)` keeps the log lines off it.
 *
 * Use:
 *   const logging = new LogManager();          // or the process-wide `logging`
 *   logging.configure({ prog: "virtnbdbackup", verbose, quiet, nocolor, logFile });
 *   const log = logging.getLogger();           // root virtnbdbackup - main [main]
 *   log.info("Backup level: [full]");
 *   const dlog = log.child({ thread: "sda", module: "disktarget", func: "backup" });
 *   withThread("sda", () => ...)               // THREAD for loggers without an explicit one
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { closeSync, openSync, writeSync } from "node:fs";
import { openSyslog, type SyslogTransport } from "./syslog.js";

import { LEVELS, type LevelName } from "./levels.js";

export { LEVELS, type LevelName } from "./levels.js";

/** The fields of a log line besides time, level and message. */
export interface LogContext {
  /** Python logger name: `root` for most lines; `lib`, `virt`, `nbd`, … for module loggers */
  logger: string;
  /** Python module name of the emitter, e.g. `virtnbdbackup`, `disktarget` */
  module: string;
  /** function name of the emitter, e.g. `main` */
  func: string;
  /** `main`, or the disk target (`sda`) for per-disk work */
  thread: string;
}

export interface LogRecord extends LogContext {
  time: Date;
  level: LevelName;
  message: string;
}

export interface Writer {
  write(text: string): unknown;
}

// ------------------------------------------------------------------ format

const pad2 = (n: number) => String(n).padStart(2, "0");

/** `[YYYY-mm-dd HH:MM:SS]` in local time (Python's `asctime` with upstream's datefmt). */
export function formatTimestamp(d: Date): string {
  return (
    `[${String(d.getFullYear()).padStart(4, "0")}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ` +
    `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}]`
  );
}

/** The plain line (log file, syslog, stderr with `--nocolor`), without newline. */
export function formatPlain(r: LogRecord): string {
  return `${formatTimestamp(r.time)} ${r.level} ${r.logger} ${r.module} - ${r.func} [${r.thread}]: ${r.message}`;
}

const ESC = {
  reset: "\x1b[0m",
  green: "\x1b[32m",
  blue: "\x1b[34m",
  cyan: "\x1b[36m",
  yellow: "\x1b[33m",
  red: "\x1b[31m",
} as const;

const LEVEL_COLOR: Record<LevelName, string> = {
  DEBUG: ESC.cyan,
  INFO: "",
  WARNING: ESC.yellow,
  ERROR: ESC.red,
  CRITICAL: ESC.red,
};

/**
 * The stderr line as upstream's colorlog formatter renders it:
 * `%(green)s%(asctime)s%(reset)s%(blue)s %(log_color)s%(levelname)s%(reset)s
 *  %(name)s %(module)s - %(funcName)s [%(threadName)s]: %(log_color)s %(message)s`
 * plus a final reset. Time green; level and message in the level colour
 * (DEBUG cyan, WARNING yellow, ERROR/CRITICAL red; INFO has none, so its level
 * name shows in the preceding blue). Note the extra space before the message.
 * With `escapes=false` (NO_COLOR) the same layout without escape codes.
 */
export function formatColored(r: LogRecord, escapes = true): string {
  if (!escapes) {
    return `${formatTimestamp(r.time)} ${r.level} ${r.logger} ${r.module} - ${r.func} [${r.thread}]:  ${r.message}`;
  }
  const lc = LEVEL_COLOR[r.level];
  const line =
    `${ESC.green}${formatTimestamp(r.time)}${ESC.reset}${ESC.blue} ${lc}${r.level}${ESC.reset} ` +
    `${r.logger} ${r.module} - ${r.func} [${r.thread}]: ${lc} ${r.message}`;
  return line.endsWith(ESC.reset) ? line : line + ESC.reset;
}

export type StderrStyle = "plain" | "color" | "nocolor-env";

/**
 * How stderr lines look: `--nocolor` → plain format; otherwise colorlog's
 * rules: `FORCE_COLOR` set (any value) → colours, else `NO_COLOR` set → the
 * coloured layout without escapes; else colours on a terminal only: a file, a
 * pipe or journald gets the same layout without escapes (upstream writes
 * escapes there too, its formatter is not given the stream to check).
 */
export function stderrStyle(nocolor: boolean, env: NodeJS.ProcessEnv = process.env, isTTY = true): StderrStyle {
  if (nocolor) return "plain";
  if ("FORCE_COLOR" in env) return "color";
  if ("NO_COLOR" in env) return "nocolor-env";
  return isTTY ? "color" : "nocolor-env";
}

/**
 * The message as logged. Object-storage paths are joined like file paths, which folds
 * `s3://bucket/…` into `s3:/bucket/…` (src/storage/object-path.ts): shown as typed.
 */
function messageText(msg: unknown): string {
  const text = msg instanceof Error ? msg.message : typeof msg === "string" ? msg : String(msg);
  return text.includes("s3:/") ? text.replace(/\bs3:\/(?!\/)/g, "s3://") : text;
}

// ------------------------------------------------------------------ threads

const threadStore = new AsyncLocalStorage<string>();

/**
 * Run `fn` with THREAD = `name` for every log line emitted inside it (also
 * across awaits) by loggers that do not set `thread` themselves — the
 * equivalent of upstream naming its worker threads after the disk.
 */
export function withThread<T>(name: string, fn: () => T): T {
  return threadStore.run(name, fn);
}

/** The THREAD name in effect (`main` outside `withThread`). */
export function currentThread(): string {
  return threadStore.getStore() ?? "main";
}

// ------------------------------------------------------------------ manager

export interface LoggingOptions {
  /** program name: default MODULE and syslog tag */
  prog: string;
  /** DEBUG instead of INFO */
  verbose?: boolean;
  /** no stderr output (backup `--quiet`) */
  quiet?: boolean;
  /** plain format on stderr */
  nocolor?: boolean;
  /** also send to syslog (backup `-L`) */
  syslog?: boolean;
  /** path of the log file, opened for appending; `null`: none */
  logFile?: string | null;
  /** environment for NO_COLOR / FORCE_COLOR */
  env?: NodeJS.ProcessEnv;
  /** clock, for tests */
  clock?: () => Date;
  /** stderr, default `process.stderr` */
  stderr?: Writer;
  /** syslog transport, default: logger(1) to /dev/log */
  syslogTransport?: SyslogTransport;
}

/** Warning and error counters (upstream's `logCount` handler). */
export interface LogCounts {
  warnings: number;
  errors: number;
}

/** Thrown by `configure()` when the log file cannot be opened. */
export class LogFileError extends Error {
  constructor(
    readonly path: string,
    readonly osError: NodeJS.ErrnoException,
  ) {
    super(`Failed to open logfile: [${pyOSErrorText(osError, path)}].`);
    this.name = "LogFileError";
  }
}

const STRERROR: Record<string, string> = {
  ENOENT: "No such file or directory",
  EACCES: "Permission denied",
  EPERM: "Operation not permitted",
  EISDIR: "Is a directory",
  ENOTDIR: "Not a directory",
  EEXIST: "File exists",
  ENOSPC: "No space left on device",
  EROFS: "Read-only file system",
  ELOOP: "Too many levels of symbolic links",
  ENAMETOOLONG: "File name too long",
  EMFILE: "Too many open files",
  EIO: "Input/output error",
};

/** Python's `str(OSError)`: `[Errno 2] No such file or directory: '/x'`. */
export function pyOSErrorText(e: NodeJS.ErrnoException, path?: string): string {
  const errno = typeof e.errno === "number" ? Math.abs(e.errno) : undefined;
  const text = (e.code && STRERROR[e.code]) ?? e.message;
  const where = path ?? e.path;
  if (errno === undefined) return where ? `${text}: '${where}'` : text;
  return where !== undefined ? `[Errno ${errno}] ${text}: '${where}'` : `[Errno ${errno}] ${text}`;
}

export class LogManager {
  /** WARNING / ERROR+CRITICAL records so far (counted whatever the destinations). */
  readonly counts: LogCounts = { warnings: 0, errors: 0 };
  private configured = false;
  private level = LEVELS.INFO;
  private prog = "main";
  private fd: number | null = null;
  private filePath: string | null = null;
  private stderr: Writer = process.stderr;
  private console: Writer | null = null;
  private style: StderrStyle = "color";
  private quiet = false;
  private syslog: SyslogTransport | null = null;
  private clock: () => Date = () => new Date();
  private fileErrorReported = false;
  private stderrLines = true;
  private readonly recordListeners = new Set<(r: LogRecord) => void>();

  /**
   * Set up destinations. Opens the log file first and throws `LogFileError`
   * if that fails (the caller logs it and exits 1, as upstream does). A
   * syslog failure is logged as a WARNING and logging goes on without it.
   */
  configure(opts: LoggingOptions): void {
    if (opts.logFile) {
      try {
        const fd = openSync(opts.logFile, "a");
        this.closeFile();
        this.fd = fd;
        this.filePath = opts.logFile;
      } catch (e) {
        throw new LogFileError(opts.logFile, e as NodeJS.ErrnoException);
      }
    }
    this.configured = true;
    this.prog = opts.prog;
    this.level = opts.verbose ? LEVELS.DEBUG : LEVELS.INFO;
    this.quiet = opts.quiet ?? false;
    if (opts.stderr) this.stderr = opts.stderr;
    this.style = stderrStyle(opts.nocolor ?? false, opts.env ?? process.env, (this.stderr as { isTTY?: boolean }).isTTY === true);
    if (opts.clock) this.clock = opts.clock;
    if (opts.syslogTransport) this.syslog = opts.syslogTransport;
    else if (opts.syslog) {
      try {
        this.syslog = openSyslog({
          tag: opts.prog,
          onError: (m) => this.getLogger({ logger: "root", func: "configure" }).warning(m),
        });
      } catch (e) {
        this.getLogger({ func: "configure" }).warning((e as Error).message);
      }
    }
  }

  /**
   * `false`: no log lines on stderr whatever `configure` says, also before it (events on
   * stderr, `--json`: src/report/events.ts). The log file and syslog are not affected.
   */
  setStderrLines(on: boolean): void {
    this.stderrLines = on;
  }

  /**
   * Calls `fn` with every record at WARNING and above, as it is logged (the event stream's
   * `warning` and `error` events). Returns the function that removes it.
   */
  onRecord(fn: (r: LogRecord) => void): () => void {
    this.recordListeners.add(fn);
    return () => this.recordListeners.delete(fn);
  }

  /** The open log file's path, if any. */
  get logFile(): string | null {
    return this.filePath;
  }

  /** True for levels that would be emitted (`isEnabledFor`). */
  isEnabledFor(level: LevelName): boolean {
    return LEVELS[level] >= this.level;
  }

  /**
   * Route stderr output through `w` (progress bars print log lines above
   * themselves); `null` restores direct writes.
   */
  setConsole(w: Writer | null): void {
    this.console = w;
  }

  /** A logger; unset fields default to `root <prog> - main [<current thread>]`. */
  getLogger(ctx: Partial<LogContext> = {}): Logger {
    return new Logger(this, ctx);
  }

  /** @internal */
  emit(level: LevelName, ctx: Partial<LogContext>, msg: unknown): void {
    if (level === "WARNING") this.counts.warnings++;
    else if (level === "ERROR" || level === "CRITICAL") this.counts.errors++;
    if (!this.isEnabledFor(level)) return;
    const record: LogRecord = {
      time: this.clock(),
      level,
      logger: ctx.logger ?? "root",
      module: ctx.module ?? this.prog,
      func: ctx.func ?? "main",
      thread: ctx.thread ?? currentThread(),
      message: messageText(msg),
    };
    if (LEVELS[level] >= LEVELS.WARNING) for (const fn of this.recordListeners) fn(record);
    if (!this.configured) {
      // Like Python's last-resort handler: WARNING and above, message only.
      if (LEVELS[level] >= LEVELS.WARNING && this.stderrLines) this.writeStderr(record.message + "\n");
      return;
    }
    const plain = formatPlain(record);
    if (this.fd !== null) this.writeFile(plain + "\n");
    if (!this.quiet && this.stderrLines) {
      const line =
        this.style === "plain" ? plain : formatColored(record, this.style === "color");
      this.writeStderr(line + "\n");
    }
    this.syslog?.send(level, plain);
  }

  private writeStderr(text: string): void {
    (this.console ?? this.stderr).write(text);
  }

  private writeFile(text: string): void {
    try {
      writeSync(this.fd!, text);
    } catch (e) {
      if (!this.fileErrorReported) {
        this.fileErrorReported = true;
        this.writeStderr(`--- Logging error ---\nWriting to ${this.filePath} failed: ${(e as Error).message}\n`);
      }
    }
  }

  /**
   * Log file writes are synchronous, so everything logged so far is in the
   * file already (e.g. before adding it to a zip archive). Kept as an explicit
   * step for callers; does nothing else.
   */
  flush(): void {}

  private closeFile(): void {
    if (this.fd !== null) {
      try {
        closeSync(this.fd);
      } catch {
        /* already closed */
      }
      this.fd = null;
    }
  }

  /** Close the log file and syslog. Counters stay readable. */
  async close(): Promise<void> {
    this.closeFile();
    const s = this.syslog;
    this.syslog = null;
    if (s) await s.close();
  }
}

export class Logger {
  constructor(
    private readonly manager: LogManager,
    readonly context: Partial<LogContext>,
    /**
     * The WARNING and ERROR/CRITICAL lines logged through this logger and its children: what a
     * run found (a run's exit code and `--strict` come from its own tally, not the process's).
     */
    readonly tally: LogCounts = { warnings: 0, errors: 0 },
  ) {}

  /** A logger with some fields replaced, sharing the tally: `log.child({ thread: "sda", module: "disktarget" })`. */
  child(ctx: Partial<LogContext>): Logger {
    return new Logger(this.manager, { ...this.context, ...ctx }, this.tally);
  }

  private count(level: LevelName): void {
    if (level === "WARNING") this.tally.warnings++;
    else if (level === "ERROR" || level === "CRITICAL") this.tally.errors++;
  }

  isEnabledFor(level: LevelName): boolean {
    return this.manager.isEnabledFor(level);
  }

  log(level: LevelName, msg: unknown): void {
    this.count(level);
    this.manager.emit(level, this.context, msg);
  }

  debug(msg: unknown): void {
    this.manager.emit("DEBUG", this.context, msg);
  }

  info(msg: unknown): void {
    this.manager.emit("INFO", this.context, msg);
  }

  warning(msg: unknown): void {
    this.count("WARNING");
    this.manager.emit("WARNING", this.context, msg);
  }

  error(msg: unknown): void {
    this.count("ERROR");
    this.manager.emit("ERROR", this.context, msg);
  }

  critical(msg: unknown): void {
    this.count("CRITICAL");
    this.manager.emit("CRITICAL", this.context, msg);
  }

  /** Python's `logging.fatal` is CRITICAL. */
  fatal(msg: unknown): void {
    this.critical(msg);
  }
}

/**
 * The process-wide manager, for modules that want a logger without having one
 * passed in (like Python's `logging.getLogger("nbd")` at import time); the
 * command configures it once in main().
 */
export const logging = new LogManager();

/** A logger of the process-wide manager: `getLogger({ logger: "nbd", module: "client" })`. */
export function getLogger(ctx: Partial<LogContext> = {}): Logger {
  return logging.getLogger(ctx);
}
