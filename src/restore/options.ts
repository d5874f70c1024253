/** The options of a `virtnbdrestore` run, as parsed by src/cli/args.ts. */
import type { RemoteOptions } from "../connect/remote.js";
import type { LibvirtLogin } from "../connect/session.js";
import type { EventOptions } from "../report/events.js";
import type { ObjectStorageOptions } from "../storage/object-path.js";

export type RestoreAction = "dump" | "restore" | "verify";

/** The connection options (`-U`, `--user`/`--password`, ssh, NBD, TLS) are those of connect/. */
export interface RestoreArgs extends RemoteOptions, LibvirtLogin, EventOptions, ObjectStorageOptions {
  action: RestoreAction;
  input: string;
  /** target dir; the literal values `dump` / `verify` select those actions (command's job) */
  output: string;
  until: string | null;
  /** comma list as given */
  sequence: string | null;
  disk: string | null;
  noprogress: boolean;
  socketfile: string;
  raw: boolean;
  adjustConfig: boolean;
  define: boolean;
  configFile: string;
  name: string | null;
  buffsize: number;
  preallocate: boolean;
  compress: boolean;
  /** `--to-raw`: `-o` is a block device or a new raw image file for one disk */
  toRaw: boolean;
  /** `--force`: with --to-raw, restore over a device that holds a partition table or filesystem */
  force: boolean;
  /** `--live`: start the domain on images over the served backup at once, copy while it runs */
  live: boolean;
  /** `--live-bandwidth`: MiB/s per disk for the copy, 0: no limit */
  liveBandwidth: number;
  logfile: string;
  nocolor: boolean;
  verbose: boolean;
}

/**
 * `-o dump` and `-o verify` select those actions whatever `-a` says. Here, not in
 * restore-command.ts: the run-start event of every command asks, and importing the command
 * would bundle all of virtnbdrestore into the other commands' start-up.
 */
export function resolveAction(args: RestoreArgs): RestoreArgs["action"] {
  if (args.output === "dump") return "dump";
  if (args.output === "verify") return "verify";
  return args.action;
}
