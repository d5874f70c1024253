/**
 * The machine-readable event stream of a run (`--json`, `--json-file`; docs/events.md, schema
 * docs/events.schema.json): one JSON object per line, each with `schema`, `event`, `time`
 * (ISO 8601 UTC), `tool` and `pid`. Any command (virtnbdbackup, virtnbdrestore, virtnbdmap,
 * virtnbdprune) opens the process-wide `runEvents` once it knows its options; until then, and
 * without `--json`, every method does nothing.
 *
 *   runEvents.open({ tool: "virtnbdbackup", sink: fileEventSink(path) });
 *   runEvents.runStart({ domain: "vm", level: "full", output: "/b" });
 *   const sda = runEvents.disk({ disk: "sda", level: "full", target: "/b/sda.full.data", total: n });
 *   sda.progress(bytes);                      // throttled `progress` events
 *   sda.done({ bytes: n, checksum: 12345 });  // `disk-done`
 *   runEvents.end(0);                         // `run-end` (totals, the last error), closes the sink
 *
 * `warning` and `error` events come from the log records themselves (`logRecord`, connected to
 * the LogManager by the command), so their `message` is the log line's text.
 */
import { closeSync, openSync, writeSync } from "node:fs";
import type { LevelName } from "./levels.js";
import { ProgressThrottle } from "./progress-throttle.js";
import { PACKAGE_VERSION, VERSION } from "./version.js";

/** The `schema` field of every event: bumped when a field is removed or changes meaning. */
export const EVENT_SCHEMA_VERSION = "1";

/** The event options every command takes (src/cli/args.ts). */
export interface EventOptions {
  /** `--json`: events on stderr (or into `jsonFile`) */
  json: boolean;
  /** `--json-file PATH`: events appended to this file (implies `json`); stderr keeps its log lines */
  jsonFile: string | null;
}

/** Events asked for at all. */
export function eventsWanted(o: EventOptions): boolean {
  return o.json || o.jsonFile !== null;
}

/** Events go to stderr: the human log lines and progress bars leave it to them. */
export function eventsOnStderr(o: EventOptions): boolean {
  return o.json && o.jsonFile === null;
}

/** Where the lines go. Each `write` gets one complete line with its newline. */
export interface EventSink {
  write(line: string): unknown;
  close?(): void;
}

/** A file opened for appending; lines are written synchronously (complete when the process exits). */
export function fileEventSink(path: string): EventSink {
  let fd: number | null = openSync(path, "a", 0o644);
  return {
    write(line) {
      if (fd !== null) writeSync(fd, line);
    },
    close() {
      if (fd !== null) closeSync(fd);
      fd = null;
    },
  };
}

/** What `run-start` says besides tool and version; tools fill what fits them. */
export interface RunStartFields {
  domain?: string;
  /** backup: the level asked for */
  level?: string;
  /** restore: dump, verify, restore */
  action?: string;
  /** backup set or files read (restore, map) */
  input?: string;
  /** target directory (backup: `-` for stdout; restore: the `-o` directory or device) */
  output?: string;
  /** a summary of the options that shape the run (no passwords, not the argv) */
  options?: Record<string, string | number | boolean | null>;
}

export interface DiskStartFields {
  /** the disk's target dev (`sda`) */
  disk: string;
  /** backup: the level of this disk's file */
  level?: string;
  /** the file written: data file (backup), image (restore) */
  target?: string;
  /** the files read, in order (restore: the chain; verify: the data file) */
  source?: string[];
  /** bytes to transfer, when known */
  total?: number;
}

export interface DiskDoneFields {
  /** bytes transferred (backup: data saved; restore: data applied; verify: bytes read) */
  bytes: number;
  /** Adler-32 of the file written (backup, as in its `.chksum`) or read (verify); null: none */
  checksum: number | null;
}

/** An NBD server a run starts or uses, where it listens. */
export interface NbdServerFields {
  /** what serves: libvirt's backup job (qemu), a qemu-nbd we started, virtnbdmap's own server (earlier versions: nbdkit) */
  server: "libvirt-backup-job" | "qemu-nbd" | "virtnbdmap" | "nbdkit";
  transport: "unix" | "tcp";
  socket?: string;
  host?: string;
  port?: number;
  exports: string[];
  tls: boolean;
  /** the disk it serves, when it serves one */
  disk?: string;
}

/** virtnbdprune's `chain` event. */
export interface ChainFields {
  location: string;
  domain: string | null;
  /** the `--chain` name, "" for the default chain */
  chain: string;
  /** the full's local time, `YYYY-MM-DDTHH:MM:SS` */
  started: string;
  backups: number;
  decision: "keep" | "remove";
  reason: string;
  dryRun: boolean;
}

/** One disk's events after its `disk-start`. */
export interface DiskEvents {
  /** `n` more bytes transferred; a `progress` event when one is due. */
  progress(n: number): void;
  /** `disk-done`; counts into the run's totals. */
  done(fields: DiskDoneFields): void;
}

const NO_DISK_EVENTS: DiskEvents = { progress() {}, done() {} };

export interface EventStreamOptions {
  tool: string;
  sink: EventSink;
  /** wall clock for `time`, default `new Date()` */
  clock?: () => Date;
  /** monotonic milliseconds for durations and rates, default `performance.now()` */
  now?: () => number;
  pid?: number;
  /** minimum time between two `progress` events of a disk, default 500 ms */
  progressIntervalMs?: number;
}

export class EventStream {
  private sink: EventSink | null = null;
  private tool = "";
  private pid = process.pid;
  private clock: () => Date = () => new Date();
  private now: () => number = () => performance.now();
  private progressIntervalMs = 500;
  private started = 0;
  private totals = { bytes: 0, disks: 0 };
  private lastError: string | null = null;

  /** Starts the stream (once; a second call replaces the sink, for tests). */
  open(o: EventStreamOptions): void {
    this.sink = o.sink;
    this.tool = o.tool;
    if (o.pid !== undefined) this.pid = o.pid;
    if (o.clock) this.clock = o.clock;
    if (o.now) this.now = o.now;
    if (o.progressIntervalMs !== undefined) this.progressIntervalMs = o.progressIntervalMs;
    this.started = this.now();
    this.totals = { bytes: 0, disks: 0 };
    this.lastError = null;
  }

  /** Events are being written. */
  get active(): boolean {
    return this.sink !== null;
  }

  runStart(fields: RunStartFields): void {
    this.emit("run-start", { version: PACKAGE_VERSION, upstreamVersion: VERSION, ...fields });
  }

  /** `disk-start`; the returned object reports the disk's progress and end. */
  disk(fields: DiskStartFields): DiskEvents {
    if (!this.sink) return NO_DISK_EVENTS;
    this.emit("disk-start", { ...fields });
    const throttle = new ProgressThrottle(this.progressIntervalMs, this.now);
    const began = this.now();
    const total = fields.total;
    return {
      progress: (n) => {
        const due = throttle.add(n);
        if (due) this.emit("progress", { disk: fields.disk, bytes: due.bytes, total: total ?? null, rate: due.rate });
      },
      done: (d) => {
        this.totals.bytes += d.bytes;
        this.totals.disks++;
        this.emit("disk-done", { disk: fields.disk, bytes: d.bytes, duration: seconds(this.now() - began), checksum: d.checksum });
      },
    };
  }

  nbdServer(fields: NbdServerFields): void {
    this.emit("nbd-server", { ...fields });
  }

  /** virtnbdprune: a chain and the decision on it. */
  chain(fields: ChainFields): void {
    this.emit("chain", { ...fields });
  }

  /** virtnbdprune: a chain removed. */
  chainRemoved(fields: { location: string; domain: string | null }): void {
    this.emit("chain-removed", { ...fields });
  }

  /** A log record: WARNING becomes `warning`, ERROR and CRITICAL `error`; other levels nothing. */
  logRecord(r: { level: LevelName; message: string; thread: string }): void {
    if (r.level === "ERROR" || r.level === "CRITICAL") {
      this.lastError = r.message;
      this.emit("error", { level: r.level, message: r.message, thread: r.thread });
    } else if (r.level === "WARNING") {
      this.emit("warning", { level: r.level, message: r.message, thread: r.thread });
    }
  }

  /** `run-end` and the sink closed; later calls do nothing. */
  end(exitCode: number): void {
    if (!this.sink) return;
    const error = exitCode !== 0 && this.lastError !== null ? { error: this.lastError } : {};
    this.emit("run-end", { exitCode, duration: seconds(this.now() - this.started), totals: { ...this.totals }, ...error });
    const sink = this.sink;
    this.sink = null;
    sink.close?.();
  }

  private emit(event: string, fields: Record<string, unknown>): void {
    if (!this.sink) return;
    const head = { schema: EVENT_SCHEMA_VERSION, event, time: this.clock().toISOString(), tool: this.tool, pid: this.pid };
    this.sink.write(JSON.stringify({ ...head, ...fields }) + "\n");
  }
}

/** Milliseconds as seconds with millisecond precision. */
const seconds = (ms: number): number => Math.round(Math.max(0, ms)) / 1000;

/** The process-wide stream: the command opens it, the layers below report into it. */
export const runEvents = new EventStream();
