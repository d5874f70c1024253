/**
 * Reusable buffers for the data path: fresh allocations cost page faults and garbage
 * collection, so buffers are kept and handed out again.
 *
 * - `BufferPool` bounds memory: its buffers never exceed a byte budget, and `acquire` waits
 *   (first come, first served) until a released buffer makes room. For pipelines that must
 *   not run ahead without limit.
 * - `BufferRecycler` never waits and does not bound the buffers in use (the caller does: the
 *   NBD server by its request limits, the map backend by its piece cache); it only keeps a
 *   few idle buffers per size for reuse. For code that cannot wait for a buffer.
 */

const MIN_CLASS = 64 * 1024;

/** The largest size class within `budget` bytes. */
function largestClass(budget: number): number {
  let largest = MIN_CLASS;
  while (largest * 2 <= budget) largest *= 2;
  return largest;
}

/** The size class of `n` bytes: a power of two, at least 64 KiB. */
export function sizeClass(n: number): number {
  let c = MIN_CLASS;
  while (c < n) c *= 2;
  return c;
}

export class BufferPool {
  private readonly free = new Map<number, Buffer[]>();
  private freeBytes = 0;
  private usedBytes = 0;
  private readonly waiters: { size: number; resolve: (b: Buffer) => void }[] = [];

  /** `count` buffers of exactly `bufferSize` bytes; `acquire()` takes one. */
  static fixed(bufferSize: number, count: number): BufferPool {
    if (bufferSize <= 0 || count <= 0) throw new RangeError("BufferPool needs a positive size and count");
    return new BufferPool(bufferSize * count, bufferSize);
  }

  /**
   * Buffers of varying sizes, rounded up to their size class, under `budget` bytes in all
   * (idle ones included). A request takes an idle buffer of its class, else a new one while
   * the budget has room, else the smallest idle larger one (a 4 MiB buffer serves a 1 MiB
   * read); only when every idle buffer is too small are idle buffers dropped for a new one.
   * Dropped buffers are garbage until V8 collects them, and V8 lets external memory grow by
   * tens of MiB before it does: alternating sizes must not turn into a stream of allocations.
   */
  static budget(budget: number): BufferPool {
    return new BufferPool(budget, null);
  }

  private constructor(
    private currentBudget: number,
    /** Every buffer's size (fixed pools), or null for size classes. */
    private readonly exactSize: number | null,
  ) {}

  get budget(): number {
    return this.currentBudget;
  }

  /** The largest buffer `acquire` hands out. */
  get bufferSize(): number {
    return this.exactSize ?? largestClass(this.currentBudget);
  }

  /**
   * A new budget for a size-class pool, set while no `acquire` waits (a disk's reads, once its
   * link's round trip is known). Idle buffers beyond it are dropped; buffers in use count
   * against it until released.
   */
  setBudget(budget: number): void {
    if (this.exactSize !== null) throw new Error("a fixed BufferPool keeps its budget");
    if (budget < MIN_CLASS) throw new RangeError(`BufferPool budget ${budget} is below ${MIN_CLASS} bytes`);
    if (this.waiters.length > 0) throw new Error("BufferPool budget changed while acquires wait");
    this.currentBudget = budget;
    this.dropIdle(0);
  }

  /** A buffer of at least `size` bytes (fixed pools: `bufferSize`; else the size class). */
  acquire(size: number = this.bufferSize): Promise<Buffer> {
    const c = this.exactSize ?? sizeClass(size);
    if (size > c || c > this.budget) return Promise.reject(new RangeError(`buffer of ${size} bytes exceeds the pool budget ${this.budget}`));
    // Behind those already waiting, even when this one would fit: a large request must not
    // wait for ever while small ones keep taking what is released.
    const b = this.waiters.length === 0 ? this.take(c) : null;
    if (b) return Promise.resolve(b);
    return new Promise((resolve) => this.waiters.push({ size: c, resolve }));
  }

  /** A buffer at once, or null when the request would wait (no room, or others waiting first). */
  tryAcquire(size: number = this.bufferSize): Buffer | null {
    const c = this.exactSize ?? sizeClass(size);
    if (size > c || c > this.budget || this.waiters.length > 0) return null;
    return this.take(c);
  }

  release(buffer: Buffer): void {
    this.usedBytes -= buffer.length;
    let list = this.free.get(buffer.length);
    if (!list) this.free.set(buffer.length, (list = []));
    list.push(buffer);
    this.freeBytes += buffer.length;
    this.dropIdle(0); // over a budget made smaller while it was in use
    this.serveWaiters();
  }

  /** Serves waiters in order; stops at the first that still does not fit (keeps FIFO fairness). */
  private serveWaiters(): void {
    while (this.waiters.length > 0) {
      const b = this.take(this.waiters[0]!.size);
      if (!b) break;
      this.waiters.shift()!.resolve(b);
    }
  }

  /** Drops idle buffers until `room` more bytes fit the budget (or none is idle). */
  private dropIdle(room: number): void {
    while (this.usedBytes + this.freeBytes + room > this.currentBudget && this.freeBytes > 0) {
      for (const [size, l] of this.free) {
        if (l.length === 0) continue;
        l.pop();
        this.freeBytes -= size;
        this.dropped++;
        break;
      }
    }
  }

  /** Bytes of the buffers handed out and not yet released. */
  get bytesInUse(): number {
    return this.usedBytes;
  }

  /** Buffers allocated, and idle ones dropped, so far (tests: reuse instead of churn). */
  allocated = 0;
  dropped = 0;

  private take(c: number): Buffer | null {
    const exact = this.free.get(c);
    // An idle buffer of its class; a new one while the budget has room; else the idle buffer
    // of the smallest larger class.
    let best = exact && exact.length > 0 ? c : 0;
    if (best === 0 && this.usedBytes + this.freeBytes + c > this.currentBudget) {
      for (const [size, l] of this.free) if (size > c && l.length > 0 && (best === 0 || size < best)) best = size;
    }
    if (best > 0) {
      const b = this.free.get(best)!.pop()!;
      this.freeBytes -= best;
      this.usedBytes += best;
      return b;
    }
    // Every idle buffer is too small: drop them until a new one fits the budget.
    this.dropIdle(c);
    if (this.usedBytes + this.freeBytes + c > this.currentBudget) return null;
    this.usedBytes += c;
    this.allocated++;
    return Buffer.allocUnsafeSlow(c);
  }
}

/**
 * Keeps at most `perClass` idle buffers per size class; `acquire` allocates when none is idle.
 * `headroom`: bytes in front of the data (a reply header before the payload): classes are
 * `headroom` + a power of two, so a 2 MiB read with its 28-byte header takes 2 MiB + 28 bytes,
 * not 4 MiB.
 */
export class BufferRecycler {
  private readonly free = new Map<number, Buffer[]>();

  constructor(
    private readonly perClass = 8,
    private readonly headroom = 0,
    /** Hand out an idle buffer of the next class up when its own class has none. */
    private readonly nextClassUp = false,
  ) {}

  /** The size class of `n` bytes. */
  classOf(n: number): number {
    return sizeClass(Math.max(1, n - this.headroom)) + this.headroom;
  }

  /**
   * A buffer of `n` bytes' size class, at once (`nextClassUp`: rather an idle one of the next
   * class up than a new one; a client's shorter reads then reuse its full-size buffers).
   */
  acquire(n: number): Buffer {
    const c = this.classOf(n);
    let b = this.free.get(c)?.pop();
    if (!b && this.nextClassUp) b = this.free.get(this.classOf(2 * (c - this.headroom) + this.headroom))?.pop();
    return b ?? Buffer.allocUnsafeSlow(c);
  }

  release(b: Buffer): void {
    const c = b.length;
    if (c !== this.classOf(c)) return;
    let list = this.free.get(c);
    if (!list) {
      list = [];
      this.free.set(c, list);
    }
    if (list.length < this.perClass) list.push(b);
  }
}
