/** The options of a `virtnbdbackup` run, as parsed by src/cli/args.ts. */
import type { GivenOptions } from "../util/given-options.js";

export type BackupLevel = "copy" | "full" | "inc" | "diff" | "auto";
export type BackupType = "stream" | "raw";

export interface BackupArgs extends GivenOptions {
  domain: string;
  level: BackupLevel;
  type: BackupType;
  raw: boolean;
  /** a directory, or `-` for a zip archive on stdout */
  output: string;
  checkpointdir: string | null;
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
  uri: string;
  user: string | null;
  sshUser: string | null;
  sshPort: number;
  sshPrivateKey: string | null;
  password: string | null;
  nbdPort: number;
  nbdIp: string;
  tls: boolean;
  tlsCert: string;
  syslog: boolean;
  quiet: boolean;
  nocolor: boolean;
  qemu: boolean;
  startonly: boolean;
  killonly: boolean;
  printonly: boolean;
  verbose: boolean;
}
