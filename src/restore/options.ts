/** The options of a `virtnbdrestore` run, as parsed by src/cli/args.ts. */
import type { GivenOptions } from "../util/given-options.js";

export type RestoreAction = "dump" | "restore" | "verify";

export interface RestoreArgs extends GivenOptions {
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
  logfile: string;
  nocolor: boolean;
  verbose: boolean;
}
