/** The options of a `virtnbdbackup` run, as parsed by src/cli/args.ts. */
import type { RemoteOptions } from "../connect/remote.js";
import type { LibvirtLogin } from "../connect/session.js";
import type { EventOptions } from "../report/events.js";
import type { ObjectStorageOptions } from "../storage/object-path.js";

export type BackupLevel = "copy" | "full" | "inc" | "diff" | "auto";
export type BackupType = "stream" | "raw";

/** The connection options (`-U`, `--user`/`--password`, ssh, NBD, TLS) are those of connect/. */
export interface BackupArgs extends RemoteOptions, LibvirtLogin, EventOptions, ObjectStorageOptions {
  domain: string;
  level: BackupLevel;
  type: BackupType;
  raw: boolean;
  /** a directory, or `-` for a zip archive on stdout */
  output: string;
  checkpointdir: string | null;
  /** `--chain`: this target's own checkpoint names `virtnbdbackup.<chain>.N`; "" for the default `virtnbdbackup.N` */
  chain: string;
  /** `--check`: report the chain's health, change nothing */
  check: boolean;
  /** `--metrics-file`: a Prometheus textfile written at the end of the run, null: none */
  metricsFile: string | null;
  scratchdir: string;
  startDomain: boolean;
  pause: boolean;
  include: string | null;
  /** comma list as given */
  exclude: string | null;
  socketfile: string;
  noprogress: boolean;
  /** `false` when `-z` is absent, `2` for a bare `-z`. `-z 0` gives level 0: we compress at level 0 and write a valid stream (the original compresses but writes no trailer, then fails). */
  compress: number | false;
  /** `null`: number of disks. Not clamped here (< 1 → 1 is the command's job). */
  worker: number | null;
  freezeMountpoint: string | null;
  strict: boolean;
  noSparseDetection: boolean;
  threshold: number | null;
  syslog: boolean;
  quiet: boolean;
  nocolor: boolean;
  qemu: boolean;
  startonly: boolean;
  killonly: boolean;
  printonly: boolean;
  verbose: boolean;
}
