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
  /** ours: disk space for decoded lz4 frames (`4G`, `512M`, `0`), see cacheSizeBytes() */
  cacheSize: string;
  noprogress: boolean;
  logfile: string;
  nocolor: boolean;
  readonly: boolean;
  hexdump: boolean;
  verbose: boolean;
}

/**
 * Bytes of `--cache-size`: a whole number with an optional K, M, G or T suffix (powers of
 * 1024, either case); throws a RangeError for anything else.
 */
export function cacheSizeBytes(size: string): number {
  const m = /^(\d+)([kmgt]?)$/i.exec(size.trim());
  if (!m) throw new RangeError(`invalid cache size [${size}]: expected bytes with an optional K, M, G or T suffix`);
  const n = Number(m[1]) * 1024 ** " kmgt".indexOf((m[2] || " ").toLowerCase());
  if (!Number.isSafeInteger(n)) throw new RangeError(`invalid cache size [${size}]: too large`);
  return n;
}
