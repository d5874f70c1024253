/** The options of a `virtnbdmap` run, as parsed by src/cli/args.ts. */
import type { GivenOptions } from "../util/given-options.js";
import type { EventOptions } from "../report/events.js";

export interface MapArgs extends GivenOptions, EventOptions {
  /** comma list of data files as given */
  file: string;
  blocksize: string;
  device: string;
  exportName: string;
  threads: string;
  listenAddress: string;
  listenPort: string;
  /** ours, not upstream: serve the export on listenAddress:listenPort without attaching /dev/nbdX */
  listenOnly: boolean;
  noprogress: boolean;
  logfile: string;
  nocolor: boolean;
  readonly: boolean;
  hexdump: boolean;
  verbose: boolean;
}
