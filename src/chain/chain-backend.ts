/**
 * An NbdBackend that serves a ChainIndex read-only: raw pieces by positional reads at their
 * payload offsets, compressed pieces by decoding their lz4 frame (whole frames, kept in a
 * small LRU cache so sequential and nearby reads decode each frame once, and, given a
 * DecodedCache, stored on disk so later random reads need no decode), holes as zeros and
 * as `hole|zero` in block status.
 */
import { type BackendExtent, type NbdBackend } from "../nbd/backend.js";
import { BufferRecycler, sizeClass } from "../util/buffer-pool.js";
import { NbdBackendError } from "../nbd/errors.js";
import { Errno, STATE_HOLE, STATE_ZERO } from "../nbd/protocol.js";
import { lz4Decompress } from "../format/lz4.js";
import { readExactly, ShortReadError, type RandomAccessSource } from "../format/source.js";
import { HOLE, type ChainIndex } from "./chain-index.js";
import type { DecodedCache } from "./decoded-cache.js";

export interface ChainBackendOptions {
  /** Bytes of decoded lz4 frames kept (default 192 MiB; at least the frame being read is kept). */
  cacheBytes?: number;
  /**
   * Decoded lz4 pieces on disk: every piece a read decodes is stored there, and reads it
   * holds are served from it like raw pieces. The owner closes it after the backend's last read.
   */
  decodedCache?: DecodedCache;
  /** Largest block status reply, in extents (default 1024). */
  maxExtents?: number;
  /** Called for every read served (offset, data), e.g. for `--hexdump`. */
  onRead?: (offset: number, data: Buffer) => void;
  description?: string;
}

/** Six of the original's largest lz4 frames (32 MiB): sequential readers on a few connections plus read-ahead. */
const DEFAULT_CACHE_BYTES = 192 * 1024 * 1024;

/** Largest read served synchronously when no other read is in flight. */
const SYNC_READ_MAX = 256 * 1024;

interface CacheEntry {
  data: Promise<Buffer>;
  bytes: number;
  /** Reads that may still look at the decoded bytes. */
  users: number;
  evicted: boolean;
}

/** One read's hold on a decoded piece: the buffer is not reused before `release`. */
export interface PieceLease {
  data: Promise<Buffer>;
  release(): void;
}

/**
 * Decoded pieces by piece number, least recently used first (Map order). An evicted piece's
 * buffer goes to `recycle` (for the next decode) once no read holds it any more.
 */
export class PieceCache {
  private readonly entries = new Map<number, CacheEntry>();
  private bytes = 0;
  hits = 0;
  misses = 0;
  prefetches = 0;

  constructor(
    readonly maxBytes: number,
    private readonly decode: (piece: number) => Promise<Buffer>,
    private readonly recycle: (buffer: Buffer) => void = () => undefined,
  ) {}

  /** The decoded piece, held until `release` is called (exactly once). */
  use(piece: number, bytes: number): PieceLease {
    const entry = this.entry(piece, bytes);
    entry.users++;
    let released = false;
    return {
      data: entry.data,
      release: () => {
        if (released) return;
        released = true;
        if (--entry.users === 0 && entry.evicted) this.recycleWhenDecoded(entry);
      },
    };
  }

  /** Starts decoding `piece` unless it is cached or being decoded (errors surface on use). */
  prefetch(piece: number, bytes: number): void {
    if (this.entries.has(piece)) return;
    this.prefetches++;
    this.entry(piece, bytes).data.catch(() => undefined);
    this.misses--;
  }

  private entry(piece: number, bytes: number): CacheEntry {
    const hit = this.entries.get(piece);
    if (hit) {
      this.hits++;
      this.entries.delete(piece);
      this.entries.set(piece, hit);
      return hit;
    }
    this.misses++;
    const entry: CacheEntry = { data: this.decode(piece), bytes, users: 0, evicted: false };
    this.entries.set(piece, entry);
    this.bytes += bytes;
    // A failed decode is not kept (the next read tries again) and leaves nothing to reuse.
    entry.data.catch(() => {
      if (this.entries.get(piece) === entry) {
        this.entries.delete(piece);
        this.bytes -= bytes;
      }
    });
    this.evict(piece);
    return entry;
  }

  private evict(keep: number): void {
    for (const [k, e] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      if (k === keep) continue;
      this.entries.delete(k);
      this.bytes -= e.bytes;
      e.evicted = true;
      if (e.users === 0) this.recycleWhenDecoded(e);
    }
  }

  private recycleWhenDecoded(e: CacheEntry): void {
    e.data.then(this.recycle, () => undefined);
  }

  get size(): number {
    return this.entries.size;
  }
}

export class ChainBackend implements NbdBackend {
  readonly readOnly = true;
  readonly canMultiConn = true;
  readonly blockSize = { minimum: 1, preferred: 4096, maximum: 32 * 1024 * 1024 };
  readonly description: string | undefined;
  readonly pieceCache: PieceCache;
  private readonly inputBuffers = new BufferRecycler(3);
  /** Buffers of decoded pieces, reused once evicted and unused (fresh ones cost page faults). */
  private readonly frameBuffers = new BufferRecycler(2);
  /** Decoded piece (a view) → the whole buffer it lives in. */
  private readonly frameBacking = new WeakMap<Buffer, Buffer>();
  private readonly maxExtents: number;
  /** Reads in progress. */
  private active = 0;
  /** End offsets of the last reads (to notice sequential access). */
  private readonly lastEnds = new Float64Array(8).fill(-1);
  private lastEndAt = 0;
  private readonly onRead: ((offset: number, data: Buffer) => void) | undefined;
  private readonly decodedCache: DecodedCache | undefined;

  constructor(
    readonly index: ChainIndex,
    private readonly sources: RandomAccessSource[],
    opts: ChainBackendOptions = {},
  ) {
    this.pieceCache = new PieceCache(
      opts.cacheBytes ?? DEFAULT_CACHE_BYTES,
      (p) => this.decodePiece(p),
      (decoded) => {
        const whole = this.frameBacking.get(decoded);
        if (whole) this.frameBuffers.release(whole);
      },
    );
    this.maxExtents = opts.maxExtents ?? 1024;
    this.onRead = opts.onRead;
    this.decodedCache = opts.decodedCache;
    this.description = opts.description;
  }

  get size(): number {
    return this.index.size;
  }

  /** Synchronous (no promise) when the read was served on the spot. */
  read(offset: number, length: number, into: Buffer): Promise<void> | void {
    const end = offset + length;
    if (end > this.index.size) throw new NbdBackendError(Errno.EINVAL, "read beyond the end of the disk");
    // Alone and small: positional reads right here. A trip through libuv's pool costs more
    // than a page-cache read, and with nothing else in flight there is nothing to overlap.
    if (this.active === 0 && length <= SYNC_READ_MAX && this.readSyncIfReady(offset, end, into)) {
      this.lastEnds[this.lastEndAt++ % this.lastEnds.length] = end;
      if (this.onRead) this.onRead(offset, into.subarray(0, length));
      return;
    }
    return this.readAsync(offset, end, into);
  }

  private async readAsync(offset: number, end: number, into: Buffer): Promise<void> {
    const ix = this.index;
    this.active++;
    try {
      const jobs: Promise<void>[] = [];
      let i = ix.find(offset);
      for (let pos = offset; pos < end; i++) {
        const e = Math.min(ix.rangeEnd(i), end);
        const piece = ix.rangePieces[i]!;
        const at = pos - offset;
        const n = e - pos;
        if (piece === HOLE) into.fill(0, at, at + n);
        else if (ix.pieceCsize[piece]! < 0) jobs.push(this.readRaw(piece, pos, into.subarray(at, at + n)));
        else jobs.push(this.readCompressed(piece, pos, into.subarray(at, at + n), offset));
        pos = e;
      }
      if (jobs.length === 1) await jobs[0];
      else if (jobs.length > 1) await Promise.all(jobs);
    } finally {
      this.active--;
      this.lastEnds[this.lastEndAt++ % this.lastEnds.length] = end;
    }
    this.onRead?.(offset, into.subarray(0, end - offset));
  }

  /** Whether piece bytes `[rel, rel+n)` can be read synchronously (raw with `readSync`, or decoded on disk). */
  private readableSync(piece: number, rel: number, n: number): boolean {
    const ix = this.index;
    if (ix.pieceCsize[piece]! >= 0) return this.decodedCache !== undefined && this.decodedCache.has(piece, rel, n);
    return this.sources[ix.pieceFile[piece]!]!.readSync !== undefined;
  }

  /** Serves the read synchronously when it touches only holes, raw pieces and decoded pieces on disk; false otherwise. */
  private readSyncIfReady(offset: number, end: number, into: Buffer): boolean {
    const ix = this.index;
    const first = ix.find(offset);
    for (let i = first, pos = offset; pos < end; i++) {
      const e = Math.min(ix.rangeEnd(i), end);
      const p = ix.rangePieces[i]!;
      if (p !== HOLE && !this.readableSync(p, pos - ix.pieceStart[p]!, e - pos)) return false;
      pos = e;
    }
    let i = first;
    for (let pos = offset; pos < end; i++) {
      const e = Math.min(ix.rangeEnd(i), end);
      const piece = ix.rangePieces[i]!;
      const at = pos - offset;
      if (piece === HOLE) into.fill(0, at, at + e - pos);
      else if (ix.pieceCsize[piece]! >= 0) this.decodedCache!.readSync(piece, pos - ix.pieceStart[piece]!, into.subarray(at, at + e - pos));
      else {
        const src = this.sources[ix.pieceFile[piece]!]!;
        const filePos = ix.piecePos[piece]! + (pos - ix.pieceStart[piece]!);
        for (let done = 0; done < e - pos; ) {
          const n = src.readSync!(into, at + done, e - pos - done, filePos + done);
          if (n <= 0) throw new NbdBackendError(Errno.EIO, `${src.name}: unexpected end of file at byte ${filePos + done}`);
          done += n;
        }
      }
      pos = e;
    }
    return true;
  }

  private async readRaw(piece: number, diskPos: number, into: Buffer): Promise<void> {
    const ix = this.index;
    const src = this.sources[ix.pieceFile[piece]!]!;
    const filePos = ix.piecePos[piece]! + (diskPos - ix.pieceStart[piece]!);
    try {
      await readExactly(src, into, 0, into.length, filePos);
    } catch (e) {
      if (e instanceof ShortReadError) throw new NbdBackendError(Errno.EIO, `${src.name}: unexpected end of file at byte ${filePos}`);
      throw e;
    }
  }

  private async readCompressed(piece: number, diskPos: number, into: Buffer, requestStart: number): Promise<void> {
    const ix = this.index;
    const cache = this.decodedCache;
    const rel = diskPos - ix.pieceStart[piece]!;
    if (cache && (await cache.read(piece, rel, into))) {
      this.prefetchAfter(piece, requestStart);
      return;
    }
    const lease = this.pieceCache.use(piece, this.pieceBytes(piece));
    this.prefetchAfter(piece, requestStart);
    let storing = false;
    try {
      const buf = await lease.data;
      buf.copy(into, 0, rel, rel + into.length);
      // The first read of a decoded piece stores it; the lease keeps the bytes until then.
      if (cache?.claim(piece, buf.length)) {
        storing = true;
        void cache.store(piece, buf).then(lease.release, lease.release);
      }
    } finally {
      if (!storing) lease.release();
    }
  }

  /**
   * Sequential reading (this request starts where an earlier one ended): decodes the next lz4
   * frame of the file while this one is being served, unless it is on disk already.
   */
  private prefetchAfter(piece: number, requestStart: number): void {
    const ix = this.index;
    const next = piece + 1;
    if (
      this.lastEnds.includes(requestStart) &&
      next < ix.pieceCount &&
      ix.pieceCsize[next]! >= 0 &&
      ix.pieceFile[next] === ix.pieceFile[piece] &&
      !this.decodedCache?.has(next, 0, ix.pieceLength[next]!)
    ) {
      this.pieceCache.prefetch(next, this.pieceBytes(next));
    }
  }

  /** Memory a decoded piece takes (its buffer's size class). */
  private pieceBytes(piece: number): number {
    return sizeClass(this.index.pieceLength[piece]!);
  }

  private async decodePiece(piece: number): Promise<Buffer> {
    const ix = this.index;
    const src = this.sources[ix.pieceFile[piece]!]!;
    const pos = ix.piecePos[piece]!;
    const csize = ix.pieceCsize[piece]!;
    const length = ix.pieceLength[piece]!;
    // Compressed input buffers are reused (fresh 16 MiB buffers per frame cost page faults and
    // garbage collection); the decoded frame lives on in the cache.
    const held = this.inputBuffers.acquire(csize);
    const input = held.subarray(0, csize);
    const whole = this.frameBuffers.acquire(length);
    const out = whole.subarray(0, length);
    this.frameBacking.set(out, whole);
    let n = -1;
    try {
      try {
        await readExactly(src, input, 0, csize, pos);
      } catch (e) {
        if (e instanceof ShortReadError) throw new NbdBackendError(Errno.EIO, `${src.name}: unexpected end of file at byte ${pos}`);
        throw e;
      }
      try {
        n = await lz4Decompress(input, out);
      } catch (e) {
        throw new NbdBackendError(Errno.EIO, `${src.name}: at byte ${pos}: ${(e as Error).message}`);
      }
    } finally {
      this.inputBuffers.release(held);
      if (n !== length) this.frameBuffers.release(whole); // failed: nobody will see these bytes
    }
    if (n !== length) throw new NbdBackendError(Errno.EIO, `${src.name}: at byte ${pos}: lz4 frame holds ${n} bytes, expected ${length}`);
    return out;
  }

  blockStatus(offset: number, length: number): BackendExtent[] {
    const ix = this.index;
    const end = Math.min(offset + length, ix.size);
    const out: BackendExtent[] = [];
    let i = ix.find(offset);
    for (let pos = offset; pos < end && out.length < this.maxExtents; i++) {
      const e = Math.min(ix.rangeEnd(i), end);
      const flags = ix.rangePieces[i] === HOLE ? STATE_HOLE | STATE_ZERO : 0;
      const last = out[out.length - 1];
      if (last && last.flags === flags) last.length += e - pos;
      else out.push({ length: e - pos, flags });
      pos = e;
    }
    return out;
  }
}
