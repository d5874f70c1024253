/** The version the tools report (`-V`) and the first line of every log. */
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { findPackage, PACKAGE_NAME } from "../util/package-root.js";

/** The original's version whose options and sets these tools match. */
export const VERSION = "2.47";

/**
 * This package's own version, from the package.json of its root (util/package-root.ts; the
 * native addon is found the same way). `unknown` if there is none.
 */
export function packageVersion(start: string = dirname(fileURLToPath(import.meta.url))): string {
  const version = findPackage(start)?.json.version;
  return typeof version === "string" ? version : "unknown";
}

/** This package's version (package.json), `2.47.0`. */
export const PACKAGE_VERSION = packageVersion();

/** `2.47 (virtnbdbackup-ts 2.47.0)`: what `-V` prints and the log's version line shows. */
export const FULL_VERSION = `${VERSION} (${PACKAGE_NAME} ${PACKAGE_VERSION})`;

/**
 * The first log line: `Version: 2.47 (virtnbdbackup-ts 2.47.0) Arguments: <argv0> <args…>`
 * (the original's is `Version: 2.47 Arguments: …`; it joins Python's sys.argv, whose first
 * element is the script path).
 */
export function versionLine(args: readonly string[], argv0: string = process.argv[1] ?? "virtnbdbackup"): string {
  return `Version: ${FULL_VERSION} Arguments: ${[argv0, ...args].join(" ")}`;
}
