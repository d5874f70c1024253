/** The version the tools report (`-V`) and the first line of every log. */

/** The original's version whose options and sets these tools match. */
export const VERSION = "2.47";

/**
 * The first log line: `Version: 2.47 Arguments: <argv0> <args…>` (the original joins Python's
 * sys.argv, whose first element is the script path).
 */
export function versionLine(args: readonly string[], argv0: string = process.argv[1] ?? "virtnbdbackup"): string {
  return `Version: ${VERSION} Arguments: ${[argv0, ...args].join(" ")}`;
}
