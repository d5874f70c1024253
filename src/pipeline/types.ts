/** What the copy engines move: extents of a disk, read from and written to block devices. */

/** A region of the disk: `data` regions are read and stored, the rest are holes or unchanged. */
export interface Extent {
  offset: number;
  length: number;
  data: boolean;
}

/** Read side of an export (our NBD client behind an adapter, or a file in tests). */
export interface BlockReader {
  /** Fills all of `into` with the bytes at `offset`. */
  read(offset: number, into: Buffer): Promise<void>;
}

/** Write side of an export (restore target). */
export interface BlockWriter {
  write(offset: number, data: Buffer): Promise<void>;
  /** Makes the range read as zeros (only needed where an incremental zeroes data). */
  zero(offset: number, length: number): Promise<void>;
  flush(): Promise<void>;
}

/** Progress in bytes of data moved (not counting holes). */
export type ProgressFn = (bytes: number) => void;
