/**
 * A bounded set of operations running at once (writes in flight): `add` waits while the set is
 * full, `drain` waits for all and rethrows the first failure, `settle` waits for all after a
 * failure elsewhere. A failed operation never becomes an unhandled rejection.
 */
export class InFlight {
  private readonly running = new Set<Promise<void>>();

  constructor(private readonly max: number) {}

  /** Adds an operation; resolves once fewer than `max` are running (rethrows a failure). */
  async add(operation: Promise<void>): Promise<void> {
    const tracked: Promise<void> = operation.finally(() => this.running.delete(tracked));
    tracked.catch(() => undefined); // observed by add/drain/settle
    this.running.add(tracked);
    while (this.running.size >= this.max) await Promise.race(this.running);
  }

  drain(): Promise<void> {
    return Promise.all(this.running).then(() => undefined);
  }

  async settle(): Promise<void> {
    await Promise.allSettled(this.running);
  }
}
