/**
 * When a disk's `progress` event is due (docs/events.md, "progress"): at most one per interval,
 * and none while no byte moved. Driven by the transfer's own updates (no timer): a stalled
 * transfer emits nothing.
 */
export interface ProgressSample {
  /** bytes done so far */
  bytes: number;
  /** bytes per second since the previous sample (or since the start for the first) */
  rate: number;
}

export class ProgressThrottle {
  private bytes = 0;
  private lastBytes = 0;
  private lastTime: number;

  /**
   * @param intervalMs minimum time between two samples (500: at most 2 a second)
   * @param now monotonic clock in milliseconds
   */
  constructor(
    private readonly intervalMs: number,
    private readonly now: () => number,
  ) {
    this.lastTime = now();
  }

  /** Bytes done so far. */
  get done(): number {
    return this.bytes;
  }

  /** Adds `n` bytes done; returns the sample to emit when one is due, else null. */
  add(n: number): ProgressSample | null {
    this.bytes += n;
    const t = this.now();
    const elapsed = t - this.lastTime;
    if (elapsed < this.intervalMs || this.bytes === this.lastBytes) return null;
    const rate = ((this.bytes - this.lastBytes) * 1000) / elapsed;
    this.lastBytes = this.bytes;
    this.lastTime = t;
    return { bytes: this.bytes, rate: Math.round(rate) };
  }
}
