/** The options of a `virtnbdmap` run, as parsed by src/cli/args.ts. */
import type { GivenOptions } from "../util/given-options.js";
import type { EventOptions } from "../report/events.js";
import type { ObjectStorageOptions } from "../storage/object-path.js";

export interface MapArgs extends GivenOptions, EventOptions, ObjectStorageOptions {
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

/** Largest overlay bitmap we accept: 2^25 blocks. */
const MAX_OVERLAY_BLOCKS = 2 ** 25;

/**
 * The overlay block size for `-b` and a disk: `-b` rounded up to a power of two, at least 4 KiB,
 * and large enough that the overlay bitmap of a huge disk stays small. Throws a RangeError for a
 * `-b` that is not a positive integer (with an optional k/M suffix).
 */
export function cowBlockSize(blocksize: string, diskSize: number): number {
  const m = /^(\d+)([kKmM]?)$/.exec(blocksize.trim());
  const n = m ? Number(m[1]) * (m[2] ? (m[2].toLowerCase() === "k" ? 1024 : 1024 * 1024) : 1) : NaN;
  if (!(n > 0) || !Number.isSafeInteger(n)) throw new RangeError(`invalid blocksize [${blocksize}]`);
  let bs = 4096;
  while (bs < n || diskSize / bs > MAX_OVERLAY_BLOCKS) bs *= 2;
  return bs;
}
