/**
 * A bounded on-disk cache of decoded lz4 pieces, so that random reads of a compressed chain
 * decode each piece once and then read like a plain set: positional reads of a file that
 * lives in the page cache (docs/behaviour.md, "Decoded-frame cache").
 *
 * The scratch file is cut into *slots* of `chunkBytes`; a decoded piece is stored as its
 * chunks (piece-relative, the last one shorter) in whatever slots are free. A map from
 * (piece, chunk) to slot says what is present; eviction is per slot, by the clock algorithm
 * (a reference bit per slot, a hand that clears it or takes the slot), and a taken slot is
 * simply written over. So the file never grows beyond `maxBytes` and needs no hole punching.
 * Slots being written or read asynchronously are pinned and never taken.
 *
 * The file is created in a private directory under the cache directory and unlinked at once
 * (the directory too): it takes disk space only while the descriptor is open, and nothing is
 * left behind when the process ends, however it ends.
 */
import { closeSync, fstatSync, openSync, read, readSync, write, constants as fsConstants } from "node:fs";
import { mkdtemp, rmdir, unlink } from "node:fs/promises";
import { join } from "node:path";

export interface DecodedCacheOptions {
  /** Bytes of decoded data kept on disk at most (rounded down to whole chunks, at least one). */
  maxBytes: number;
  /** Where the scratch file is made (default: `cacheDirectory()`). */
  dir?: string;
  /** Unit of storage and eviction (default 1 MiB). */
  chunkBytes?: number;
}

/** `$XDG_CACHE_HOME` when set, else `/var/tmp` (disk-backed, unlike a tmpfs `/tmp`). */
export function cacheDirectory(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env["XDG_CACHE_HOME"];
  return xdg && xdg.startsWith("/") ? xdg : "/var/tmp";
}

const DEFAULT_CHUNK = 1024 * 1024;
/** Chunk numbers per piece in a key (pieces are at most 128 MiB: 128 chunks of 1 MiB, 2^20 of 128 bytes). */
const KEY_STRIDE = 2 ** 20;
const FREE = -1;

function writeAt(fd: number, buf: Buffer, pos: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (done: number): void => {
      if (done === buf.length) return resolve();
      write(fd, buf, done, buf.length - done, pos + done, (err, n) => (err ? reject(err) : step(done + n)));
    };
    step(0);
  });
}

function readAt(fd: number, into: Buffer, pos: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (done: number): void => {
      if (done === into.length) return resolve();
      read(fd, into, done, into.length - done, pos + done, (err, n) => {
        if (err) reject(err);
        else if (n === 0) reject(new Error(`decoded-frame cache: short read at byte ${pos + done}`));
        else step(done + n);
      });
    };
    step(0);
  });
}

export class DecodedCache {
  readonly chunkBytes: number;
  readonly slots: number;
  private readonly slotOf = new Map<number, number>();
  private readonly slotKey: Float64Array;
  private readonly referenced: Uint8Array;
  /** Asynchronous readers and the writer of each slot. */
  private readonly pins: Uint16Array;
  private readonly free: number[] = [];
  private hand = 0;
  /** Pieces a store is running for. */
  private readonly storing = new Set<number>();
  private storeWaiters: (() => void)[] = [];
  private closed = false;
  /** Reads and writes on libuv's pool (the descriptor stays open until they end). */
  private inflight = 0;
  private idle: (() => void) | null = null;
  /** Set when a write failed (e.g. ENOSPC): nothing more is stored, what is there still serves. */
  failure: Error | null = null;
  hits = 0;
  stores = 0;
  evictions = 0;

  private constructor(
    private readonly fd: number,
    maxBytes: number,
    chunkBytes: number,
  ) {
    this.chunkBytes = chunkBytes;
    this.slots = Math.max(1, Math.floor(maxBytes / chunkBytes));
    this.slotKey = new Float64Array(this.slots).fill(FREE);
    this.referenced = new Uint8Array(this.slots);
    this.pins = new Uint16Array(this.slots);
    for (let s = this.slots - 1; s >= 0; s--) this.free.push(s);
  }

  /** Creates the scratch file (already unlinked when this resolves). */
  static async create(opts: DecodedCacheOptions): Promise<DecodedCache> {
    const chunk = opts.chunkBytes ?? DEFAULT_CHUNK;
    if (!(chunk > 0) || !Number.isSafeInteger(chunk)) throw new RangeError(`decoded-frame cache: bad chunk size ${chunk}`);
    const dir = await mkdtemp(join(opts.dir ?? cacheDirectory(), "virtnbdmap-cache."));
    const path = join(dir, "decoded");
    let fd = -1;
    try {
      fd = openSync(path, fsConstants.O_RDWR | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
    } finally {
      await unlink(path).catch(() => undefined);
      await rmdir(dir);
    }
    return new DecodedCache(fd, opts.maxBytes, chunk);
  }

  /** Bytes the scratch file may hold. */
  get maxBytes(): number {
    return this.slots * this.chunkBytes;
  }

  /** Chunks present. */
  get storedChunks(): number {
    return this.slotOf.size;
  }

  private key(piece: number, chunk: number): number {
    return piece * KEY_STRIDE + chunk;
  }

  /** Whether every chunk holding piece bytes `[rel, rel+length)` is present. */
  has(piece: number, rel: number, length: number): boolean {
    const C = this.chunkBytes;
    const last = Math.floor((rel + length - 1) / C);
    for (let k = Math.floor(rel / C); k <= last; k++) if (!this.slotOf.has(this.key(piece, k))) return false;
    return true;
  }

  /** Reads piece bytes `[rel, rel+into.length)` at once (blocking); the caller checked `has`. */
  readSync(piece: number, rel: number, into: Buffer): void {
    const C = this.chunkBytes;
    for (let done = 0; done < into.length; ) {
      const k = Math.floor((rel + done) / C);
      const s = this.slotOf.get(this.key(piece, k))!;
      this.referenced[s] = 1;
      const inChunk = rel + done - k * C;
      const n = Math.min(C - inChunk, into.length - done);
      for (let got = 0; got < n; ) {
        const r = readSync(this.fd, into, done + got, n - got, s * C + inChunk + got);
        if (r <= 0) throw new Error(`decoded-frame cache: short read at byte ${s * C + inChunk + got}`);
        got += r;
      }
      done += n;
    }
    this.hits++;
  }

  /** Reads piece bytes on libuv's pool; false (nothing read) unless every chunk is present. */
  async read(piece: number, rel: number, into: Buffer): Promise<boolean> {
    if (!this.has(piece, rel, into.length)) return false;
    const C = this.chunkBytes;
    const jobs: Promise<void>[] = [];
    const pinned: number[] = [];
    for (let done = 0; done < into.length; ) {
      const k = Math.floor((rel + done) / C);
      const s = this.slotOf.get(this.key(piece, k))!;
      this.referenced[s] = 1;
      this.pins[s]!++;
      pinned.push(s);
      const inChunk = rel + done - k * C;
      const n = Math.min(C - inChunk, into.length - done);
      jobs.push(this.tracked(readAt(this.fd, into.subarray(done, done + n), s * C + inChunk)));
      done += n;
    }
    try {
      await Promise.all(jobs);
    } finally {
      for (const s of pinned) this.pins[s]!--;
    }
    this.hits++;
    return true;
  }

  /**
   * Claims the store of `piece` (`length` decoded bytes): true when some chunk is missing,
   * nothing stores it already and storing works; the caller then calls `store` once.
   */
  claim(piece: number, length: number): boolean {
    if (this.closed || this.failure || this.storing.has(piece) || this.has(piece, 0, length)) return false;
    this.storing.add(piece);
    return true;
  }

  /** Writes the missing chunks of a claimed piece (`data` = all its decoded bytes). Never rejects. */
  async store(piece: number, data: Buffer): Promise<void> {
    const C = this.chunkBytes;
    try {
      for (let k = 0; k * C < data.length && !this.closed; k++) {
        const key = this.key(piece, k);
        if (this.slotOf.has(key)) continue;
        const s = this.takeSlot();
        if (s === FREE) break; // every slot is busy: the rest stays uncached
        this.slotKey[s] = key;
        this.pins[s]!++;
        try {
          await this.tracked(writeAt(this.fd, data.subarray(k * C, Math.min(data.length, (k + 1) * C)), s * C));
        } catch (e) {
          this.failure = e as Error;
          this.slotKey[s] = FREE;
          this.free.push(s);
          break;
        } finally {
          this.pins[s]!--;
        }
        if (this.closed) break;
        // Unreferenced until read: of a piece decoded for one small read, the chunks nobody
        // reads go first.
        this.slotOf.set(key, s);
      }
      this.stores++;
    } finally {
      this.storing.delete(piece);
      if (this.storing.size === 0) for (const w of this.storeWaiters.splice(0)) w();
    }
  }

  /** Resolves when no store is running. */
  storesDone(): Promise<void> {
    if (this.storing.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.storeWaiters.push(resolve));
  }

  /** The scratch file's size and the bytes it takes on disk. */
  fileBytes(): { size: number; allocated: number } {
    const st = fstatSync(this.fd);
    return { size: st.size, allocated: st.blocks * 512 };
  }

  /** A free slot, or the first unreferenced, unpinned one under the clock hand (evicted); FREE when all are busy. */
  private takeSlot(): number {
    const s = this.free.pop();
    if (s !== undefined) return s;
    for (let tries = 0; tries < 2 * this.slots; tries++) {
      const c = this.hand;
      this.hand = (c + 1) % this.slots;
      if (this.pins[c]! > 0) continue;
      if (this.referenced[c]) {
        this.referenced[c] = 0;
        continue;
      }
      this.slotOf.delete(this.slotKey[c]!);
      this.slotKey[c] = FREE;
      this.evictions++;
      return c;
    }
    return FREE;
  }

  private async tracked(job: Promise<void>): Promise<void> {
    this.inflight++;
    try {
      await job;
    } finally {
      if (--this.inflight === 0) this.idle?.();
    }
  }

  /**
   * Stops reads and stores, waits for those on the pool, closes the scratch file (its space is
   * freed). Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.slotOf.clear();
    if (this.inflight > 0) await new Promise<void>((r) => (this.idle = r));
    closeSync(this.fd);
  }
}
