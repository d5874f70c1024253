/**
 * What the NBD server serves: an export backed by anything that can read at an offset and
 * (optionally) report allocation, write, zero, trim and flush.
 *
 * Errors: throw `NbdBackendError(errno, message)`, or any error with a Node `code`
 * (`EIO`, `ENOSPC`, …); other errors become EIO. The message reaches the client.
 */

/** A `base:allocation` status: `flags` uses NBD_STATE_HOLE (1) and NBD_STATE_ZERO (2). */
export interface BackendExtent {
  length: number;
  flags: number;
}

export interface ZeroFlags {
  /** The client asked to keep the range allocated. */
  noHole: boolean;
  /** Fail with ENOTSUP unless zeroing is fast (cheaper than writing). */
  fastZero: boolean;
}

/** Bytes a backend holds in memory anyway, lent to a read reply without a copy (`readView`). */
export interface ReadView {
  data: Buffer;
  /** Called once the reply is written (or dropped): the backend may reuse the memory. */
  release(): void;
}

export interface NbdBackend {
  /** Export size in bytes. */
  readonly size: number;
  /** Refuse writes (default: true when there is no `write`). */
  readonly readOnly?: boolean;
  /** Several connections may be used at once (shared state, flush visible to all). Default true. */
  readonly canMultiConn?: boolean;
  /** Block size constraints; defaults 1 / 4096 / the server's request limit. */
  readonly blockSize?: { minimum: number; preferred: number; maximum: number };
  /** Shown in NBD_OPT_LIST and NBD_INFO_DESCRIPTION. */
  readonly description?: string;

  /** Fills `into` (exactly `length` bytes) with the data at `offset`. */
  read(offset: number, length: number, into: Buffer): Promise<void> | void;
  /**
   * The data at `offset` as a view of memory the backend holds (a decoded lz4 frame), sent as
   * it is and released after; null when it has none for this range (the server then calls
   * `read` with a buffer of its own). Saves a copy and the reply buffer.
   */
  readView?(offset: number, length: number): Promise<ReadView> | null;
  /**
   * `base:allocation` extents from `offset`, in order, covering at most `length` bytes (at
   * least one extent). Without it every range is reported as allocated data (flags 0).
   */
  blockStatus?(offset: number, length: number): Promise<BackendExtent[]> | BackendExtent[];
  write?(offset: number, data: Buffer): Promise<void> | void;
  /** Without it, zeroing writes zero buffers (and FAST_ZERO requests fail with ENOTSUP). */
  writeZeroes?(offset: number, length: number, flags: ZeroFlags): Promise<void> | void;
  /** Advisory discard. */
  trim?(offset: number, length: number): Promise<void> | void;
  /** Make completed writes durable. Also used for FUA. */
  flush?(): Promise<void> | void;
  /** Prefetch hint. */
  cache?(offset: number, length: number): Promise<void> | void;
}
