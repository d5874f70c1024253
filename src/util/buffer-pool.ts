/**
 * A fixed number of equally sized buffers, allocated on first use and then reused:
 * bounds the memory of a pipeline and avoids page faults from fresh allocations.
 */
export class BufferPool {
  private readonly free: Buffer[] = [];
  private readonly waiters: ((b: Buffer) => void)[] = [];
  private created = 0;

  constructor(
    readonly bufferSize: number,
    readonly count: number,
  ) {
    if (bufferSize <= 0 || count <= 0) throw new RangeError("BufferPool needs a positive size and count");
  }

  acquire(): Promise<Buffer> {
    const b = this.free.pop();
    if (b) return Promise.resolve(b);
    if (this.created < this.count) {
      this.created++;
      return Promise.resolve(Buffer.allocUnsafeSlow(this.bufferSize));
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  release(buffer: Buffer): void {
    const waiter = this.waiters.shift();
    if (waiter) waiter(buffer);
    else this.free.push(buffer);
  }

  /** Buffers currently handed out. */
  get inUse(): number {
    return this.created - this.free.length;
  }
}
