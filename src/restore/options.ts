/** The options of a `virtnbdrestore` run, as parsed by src/cli/args.ts. */
import type { RemoteOptions } from "../connect/remote.js";
import type { LibvirtLogin } from "../connect/session.js";

export type RestoreAction = "dump" | "restore" | "verify";

/** The connection options (`-U`, `--user`/`--password`, ssh, NBD, TLS) are those of connect/. */
export interface RestoreArgs extends RemoteOptions, LibvirtLogin {
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
  logfile: string;
  nocolor: boolean;
  verbose: boolean;
}
