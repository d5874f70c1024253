/**
 * Buffers of varying sizes under one memory budget: sizes are rounded up to a power of two
 * (at least 64 KiB) and freed buffers are kept per size for reuse. `acquire` waits while the
 * budget is used up, so a pipeline can read ahead without unbounded memory.
 */
const MIN_CLASS = 64 * 1024;

function sizeClass(n: number): number {
  let c = MIN_CLASS;
  while (c < n) c *= 2;
  return c;
}

export class SizedPool {
  private readonly free = new Map<number, Buffer[]>();
  private freeBytes = 0;
  private usedBytes = 0;
  private readonly waiters: { size: number; resolve: (b: Buffer) => void }[] = [];

  constructor(readonly budget: number) {}

  /** A buffer of at least `size` bytes (its length is the size class). */
  acquire(size: number): Promise<Buffer> {
    const c = sizeClass(size);
    if (c > this.budget) return Promise.reject(new RangeError(`buffer of ${size} bytes exceeds the pool budget ${this.budget}`));
    const b = this.take(c);
    if (b) return Promise.resolve(b);
    return new Promise((resolve) => this.waiters.push({ size: c, resolve }));
  }

  release(buffer: Buffer): void {
    this.usedBytes -= buffer.length;
    let list = this.free.get(buffer.length);
    if (!list) this.free.set(buffer.length, (list = []));
    list.push(buffer);
    this.freeBytes += buffer.length;
    // Serve waiters in order; stop at the first that still does not fit (keeps FIFO fairness).
    while (this.waiters.length > 0) {
      const b = this.take(this.waiters[0]!.size);
      if (!b) break;
      this.waiters.shift()!.resolve(b);
    }
  }

  get bytesInUse(): number {
    return this.usedBytes;
  }

  private take(c: number): Buffer | null {
    const list = this.free.get(c);
    if (list && list.length > 0) {
      const b = list.pop()!;
      this.freeBytes -= c;
      this.usedBytes += c;
      return b;
    }
    // Drop idle buffers of other sizes until a new one fits the budget.
    while (this.usedBytes + this.freeBytes + c > this.budget && this.freeBytes > 0) {
      for (const [size, l] of this.free) {
        if (l.length === 0) continue;
        l.pop();
        this.freeBytes -= size;
        break;
      }
    }
    if (this.usedBytes + this.freeBytes + c > this.budget) return null;
    this.usedBytes += c;
    return Buffer.allocUnsafeSlow(c);
  }
}
