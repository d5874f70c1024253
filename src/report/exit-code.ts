/** The exit code of a run from what it found (docs/cli.md, "Exit codes"). */
import type { LogCounts } from "./log.js";

/** Any ERROR/CRITICAL → 1; else `--strict` with warnings → 2; else 0. */
export function exitCodeFromCounts(counts: LogCounts, strict = false): 0 | 1 | 2 {
  if (counts.errors > 0) return 1;
  if (strict && counts.warnings > 0) return 2;
  return 0;
}

/** sysexits.h EX_TEMPFAIL: another backup of the domain holds its lock; try again later. */
export const EXIT_TEMPFAIL = 75;
