/**
 * An NbdBackend that serves a ChainIndex read-only: raw pieces by positional reads at their
 * payload offsets, compressed pieces by decoding their lz4 frame (whole frames, kept in a
 * small LRU cache so sequential and nearby reads decode each frame once, and, given a
 * DecodedCache, stored on disk so later random reads need no decode), holes as zeros and
 * as `hole|zero` in block status.
 */
import { type BackendExtent, type NbdBackend, type ReadView } from "../nbd/backend.js";
import { BufferPool, BufferRecycler, sizeClass } from "../util/buffer-pool.js";
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
   * Bounded memory for one reader going front to back (a restore's qemu-img), instead of
   * `cacheBytes`: one buffer of the largest lz4 piece's size holds the decoded piece being
   * read, and one of `spare` bytes a piece of at most that size (an incremental's small piece
   * inside a full's frame then leaves the frame alone: reading on in it after the piece
   * decodes it once); decodes run one at a time, their compressed input in one buffer kept
   * for all. A decode waits until no read holds the piece in its buffer any more; nothing is
   * decoded ahead. Memory: twice the largest piece plus `spare`, e.g. 68 MiB for the
   * original's 32 MiB frames and a 4 MiB spare. Buffers of fixed sizes: pieces of varying
   * sizes in a budget would drop idle buffers for new ones, garbage V8 lets pile up.
   */
  boundedDecode?: { spare: number };
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

/** Compressed input buffers kept idle for the next decodes. */
const IDLE_INPUTS = 3;

/** Largest read served synchronously when no other read is in flight. */
const SYNC_READ_MAX = 256 * 1024;

interface CacheEntry {
  data: Promise<Buffer>;
  /** The decoded bytes once `data` resolved (an eviction then gives the buffer back at once). */
  value: Buffer | null;
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
    const entry: CacheEntry = { data: this.decode(piece), value: null, bytes, users: 0, evicted: false };
    this.entries.set(piece, entry);
    this.bytes += bytes;
    entry.data.then(
      (b) => void (entry.value = b),
      () => {
        // A failed decode is not kept (the next read tries again) and leaves nothing to reuse.
        if (this.entries.get(piece) === entry) {
          this.entries.delete(piece);
          this.bytes -= bytes;
        }
      },
    );
    this.evict(piece);
    return entry;
  }

  /**
   * Gives up the least recently used piece other than `keep` of those `which` accepts (its
   * buffer goes back now, or once the reads holding it are done); false when there is none.
   */
  evictOldest(keep: number, which: (piece: number) => boolean = () => true): boolean {
    for (const [k, e] of this.entries) {
      if (k === keep || !which(k)) continue;
      this.drop(k, e);
      return true;
    }
    return false;
  }

  private evict(keep: number): void {
    for (const [k, e] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      if (k !== keep) this.drop(k, e);
    }
  }

  private drop(k: number, e: CacheEntry): void {
    this.entries.delete(k);
    this.bytes -= e.bytes;
    e.evicted = true;
    if (e.users === 0) this.recycleWhenDecoded(e);
  }

  private recycleWhenDecoded(e: CacheEntry): void {
    if (e.value) this.recycle(e.value);
    else e.data.then(this.recycle, () => undefined);
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
  /**
   * Compressed input of decodes, all of the largest lz4 frame's size (a power-of-two class
   * would make a 32 MiB frame that lz4 could not shrink a 64 MiB buffer); a few kept idle.
   */
  private readonly idleInputs: Buffer[] = [];
  private readonly inputSize: number;
  /** Buffers of decoded pieces, reused once evicted and unused (fresh ones cost page faults). */
  private readonly frameBuffers = new BufferRecycler(2);
  /** `boundedDecode`: the decoded pieces' buffers (one large, one of `spare` bytes); null: `frameBuffers` and `cacheBytes`. */
  private readonly decodePool: BufferPool | null;
  private readonly smallPool: BufferPool | null;
  /** `boundedDecode`: decodes one after another (one input buffer). */
  private decodeTail: Promise<unknown> = Promise.resolve();
  /** Compressed input buffers allocated so far (tests). */
  inputsAllocated = 0;
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
    let largest = 0;
    let largestInput = 0;
    for (let p = 0; p < index.pieceCount; p++) {
      if (index.pieceCsize[p]! < 0) continue;
      largest = Math.max(largest, index.pieceLength[p]!);
      largestInput = Math.max(largestInput, index.pieceCsize[p]!);
    }
    this.inputSize = largestInput;
    const bounded = opts.boundedDecode;
    this.decodePool = bounded && largest > 0 ? BufferPool.fixed(sizeClass(largest), 1) : null;
    this.smallPool = bounded && largest > 0 && bounded.spare > 0 && bounded.spare < sizeClass(largest) ? BufferPool.fixed(bounded.spare, 1) : null;
    this.pieceCache = new PieceCache(
      // Bounded: the pool decides when cached pieces must go.
      this.decodePool ? Number.POSITIVE_INFINITY : (opts.cacheBytes ?? DEFAULT_CACHE_BYTES),
      (p) => this.decodePiece(p),
      (decoded) => {
        const whole = this.frameBacking.get(decoded);
        if (!whole) return;
        if (this.decodePool) this.poolFor(whole.length).release(whole);
        else this.frameBuffers.release(whole);
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

  /**
   * A read inside one lz4 piece: the decoded bytes themselves, held (the lease) until the
   * server has sent them. No copy and no reply buffer; with `boundedDecode` the reply is what
   * keeps the piece's buffer busy. Null elsewhere (and with an on-disk DecodedCache, whose path
   * stores decoded pieces): the server reads into a buffer of its own.
   */
  readView(offset: number, length: number): Promise<ReadView> | null {
    const ix = this.index;
    const end = offset + length;
    if (this.decodedCache || length <= 0 || end > ix.size) return null;
    const i = ix.find(offset);
    const piece = ix.rangePieces[i]!;
    if (piece === HOLE || ix.pieceCsize[piece]! < 0 || ix.rangeEnd(i) < end) return null;
    const rel = offset - ix.pieceStart[piece]!;
    this.active++;
    const lease = this.pieceCache.use(piece, this.pieceBytes(piece));
    this.prefetchAfter(piece, offset);
    return lease.data.then(
      (buf) => {
        this.active--;
        this.lastEnds[this.lastEndAt++ % this.lastEnds.length] = end;
        const data = buf.subarray(rel, rel + length);
        this.onRead?.(offset, data);
        return { data, release: lease.release };
      },
      (e: unknown) => {
        this.active--;
        lease.release();
        throw e;
      },
    );
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
      !this.decodedCache?.has(next, 0, ix.pieceLength[next]!) &&
      // Bounded: the budget has no room to guess with (a piece decoded ahead for nothing may
      // push out one still to be read, which is then decoded again).
      !this.decodePool
    ) {
      this.pieceCache.prefetch(next, this.pieceBytes(next));
    }
  }

  /** Memory a decoded piece takes (its buffer's size class). */
  private pieceBytes(piece: number): number {
    return sizeClass(this.index.pieceLength[piece]!);
  }

  /** `boundedDecode`: the pool a decoded piece of `length` bytes takes its buffer from. */
  private poolFor(length: number): BufferPool {
    return this.smallPool && length <= this.smallPool.bufferSize ? this.smallPool : this.decodePool!;
  }

  private decodePiece(piece: number): Promise<Buffer> {
    const length = this.index.pieceLength[piece]!;
    if (!this.decodePool) {
      const whole = this.frameBuffers.acquire(length);
      return this.decodeInto(piece, whole, () => this.frameBuffers.release(whole));
    }
    // Room first: the cached piece in its pool goes (still being read, it gives the buffer
    // back when released: then the wait ends). Pieces decoded later wait behind this one (the
    // pool serves in order), so none of them can take the buffer it waits for and stay cached.
    const pool = this.poolFor(length);
    const same = (p: number) => this.poolFor(this.index.pieceLength[p]!) === pool;
    let whole = pool.tryAcquire(length);
    while (!whole && this.pieceCache.evictOldest(piece, same)) whole = pool.tryAcquire(length);
    return (whole ? Promise.resolve(whole) : pool.acquire(length)).then((w) => {
      const run = this.decodeTail.then(() => this.decodeInto(piece, w, () => pool.release(w)));
      this.decodeTail = run.catch(() => undefined);
      return run;
    });
  }

  private newInput(): Buffer {
    this.inputsAllocated++;
    return Buffer.allocUnsafeSlow(this.inputSize);
  }

  /** With `boundedDecode`: the pools of decoded pieces' buffers, large and small (tests: budgets, allocations). */
  get decodeBuffers(): BufferPool[] {
    return [this.decodePool, this.smallPool].filter((p): p is BufferPool => p !== null);
  }

  /** Reads and decodes `piece` into `whole`; `fail` gives `whole` back when nobody will see it. */
  private async decodeInto(piece: number, whole: Buffer, fail: () => void): Promise<Buffer> {
    const ix = this.index;
    const src = this.sources[ix.pieceFile[piece]!]!;
    const pos = ix.piecePos[piece]!;
    const csize = ix.pieceCsize[piece]!;
    const length = ix.pieceLength[piece]!;
    // Compressed input buffers are reused (fresh 32 MiB buffers per frame cost page faults and
    // garbage collection); the decoded frame lives on in the cache.
    const held = this.idleInputs.pop() ?? this.newInput();
    const input = held.subarray(0, csize);
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
      if (this.idleInputs.length < IDLE_INPUTS) this.idleInputs.push(held);
      if (n !== length) fail(); // failed: nobody will see these bytes
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
