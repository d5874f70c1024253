/**
 * Operations running at once (writes in flight), optionally at most `max`: `track` starts
 * watching one, `add` also waits while the set is full (rethrowing a failure seen while
 * waiting), `drain` waits for all and rethrows the first failure, `settle` waits for those
 * running now whatever their outcome. The first failure is kept (`failed`, `failure`) so a
 * producer can stop early. A failed operation never becomes an unhandled rejection.
 */
export class InFlight {
  private readonly running = new Set<Promise<void>>();
  private first: { error: unknown } | null = null;

  constructor(private readonly max = Infinity) {}

  /** Watches an operation (the caller may await it too). */
  track(operation: Promise<unknown>): void {
    const tracked: Promise<void> = operation.then(
      () => void this.running.delete(tracked),
      (e: unknown) => {
        this.running.delete(tracked);
        this.first ??= { error: e };
        throw e;
      },
    );
    tracked.catch(() => undefined); // observed by add/drain/failed
    this.running.add(tracked);
  }

  /** Watches an operation; resolves once fewer than `max` are running (rethrows a failure). */
  async add(operation: Promise<unknown>): Promise<void> {
    this.track(operation);
    while (this.running.size >= this.max) await Promise.race(this.running);
  }

  /** True once an operation has failed. */
  get failed(): boolean {
    return this.first !== null;
  }

  /** The first failure (undefined while none failed). */
  get failure(): unknown {
    return this.first?.error;
  }

  drain(): Promise<void> {
    return Promise.all(this.running).then(() => undefined);
  }

  async settle(): Promise<void> {
    if (this.running.size > 0) await Promise.allSettled(this.running);
  }
}

/**
 * `operation`, already running, to be awaited later (after other awaits): its failure is not an
 * unhandled rejection meanwhile, and still reaches whoever awaits it. Independent libvirt calls
 * started together this way cost one round trip instead of one each (a remote libvirt's, on a
 * slow link, cost 20 ms each one after the other).
 */
export function awaitLater<T>(operation: Promise<T>): Promise<T> {
  operation.catch(() => undefined);
  return operation;
}
