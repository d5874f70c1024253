/**
 * Async exact-length reads over pushed chunks: used for the (small, sequential)
 * handshake phase on both sides. Callers bound every length they ask for.
 */
export class ByteQueue {
  private chunks: Buffer[] = [];
  private available = 0;
  private waiter: { n: number; resolve: () => void; reject: (e: Error) => void } | null = null;
  private failure: Error | null = null;

  /** Appends bytes (the queue keeps a reference: pass a copy if the buffer is reused). */
  push(chunk: Buffer): void {
    if (this.failure || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.available += chunk.length;
    this.wake();
  }

  /** Every later read rejects with `err` (the first failure wins). */
  fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(err);
  }

  get buffered(): number {
    return this.available;
  }

  private wake(): void {
    const w = this.waiter;
    if (w && this.available >= w.n) {
      this.waiter = null;
      w.resolve();
    }
  }

  private wait(n: number): Promise<void> {
    if (this.available >= n) return Promise.resolve();
    if (this.failure) return Promise.reject(this.failure);
    if (this.waiter) return Promise.reject(new Error("ByteQueue: concurrent reads"));
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
    });
  }

  private take(n: number, out: Buffer | null): void {
    let pos = 0;
    while (pos < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - pos);
      if (out) c.copy(out, pos, 0, k);
      pos += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.available -= n;
  }

  /** Exactly `n` bytes (a fresh buffer). */
  async read(n: number): Promise<Buffer> {
    await this.wait(n);
    const out = Buffer.allocUnsafe(n);
    this.take(n, out);
    return out;
  }

  /** Discards `n` bytes without holding them all in memory. */
  async skip(n: number): Promise<void> {
    while (n > 0) {
      await this.wait(1);
      const k = Math.min(n, this.available);
      this.take(k, null);
      n -= k;
    }
  }

  /** Hands out whatever is buffered (e.g. bytes of the next phase that arrived early). */
  drain(): Buffer[] {
    const out = this.chunks;
    this.chunks = [];
    this.available = 0;
    return out;
  }
}
