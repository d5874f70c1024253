/** The signals that end a run the way Ctrl-C does, and their numbers as the original logs them. */

export const TERMINATING_SIGNALS: readonly NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];

const NUMBERS: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGPIPE: 13, SIGTERM: 15 };

/** `2` for SIGINT (the original logs the number). */
export function signalNumber(signal: NodeJS.Signals): number | NodeJS.Signals {
  return NUMBERS[signal] ?? signal;
}

/**
 * Calls `handler` on each of `signals` (SIGHUP too: without a handler Node dies when the
 * terminal goes away and leaves helpers running). Returns the function that removes it.
 */
export function onSignals(handler: (signal: NodeJS.Signals) => void, signals: readonly NodeJS.Signals[] = TERMINATING_SIGNALS): () => void {
  for (const s of signals) process.on(s, handler);
  return () => {
    for (const s of signals) process.off(s, handler);
  };
}

/** The terminating signals a run receives, in order. */
export interface SignalQueue {
  /** The oldest signal not yet taken; the same promise until a signal resolves it. */
  next(): Promise<NodeJS.Signals>;
}

/** Queues every terminating signal from now on; `dispose` removes the handlers. */
export function signalQueue(signals: readonly NodeJS.Signals[] = TERMINATING_SIGNALS): { queue: SignalQueue; dispose: () => void } {
  const received: NodeJS.Signals[] = [];
  let waiting: { promise: Promise<NodeJS.Signals>; resolve: (s: NodeJS.Signals) => void } | null = null;
  const dispose = onSignals((signal) => {
    if (waiting) {
      waiting.resolve(signal);
      waiting = null;
    } else received.push(signal);
  }, signals);
  const next = (): Promise<NodeJS.Signals> => {
    if (waiting) return waiting.promise;
    const first = received.shift();
    if (first) return Promise.resolve(first);
    let resolve!: (s: NodeJS.Signals) => void;
    const promise = new Promise<NodeJS.Signals>((r) => (resolve = r));
    waiting = { promise, resolve };
    return promise;
  };
  return { queue: { next }, dispose };
}
