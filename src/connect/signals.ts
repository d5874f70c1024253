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
