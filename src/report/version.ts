/** The version the tools report (`-V`) and the first line of every log. */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The original's version whose options and sets these tools match. */
export const VERSION = "2.47";

const PACKAGE_NAME = "virtnbdbackup-ts";

/**
 * This package's own version, read from its package.json: the first `package.json` named
 * `virtnbdbackup-ts` above this module. The same lookup works from the sources (src/report/),
 * from tsc's output (dist/report/), from the bundles (dist/bin/*.mjs) and from an installed
 * package, which always carries its package.json (the native addon is found the same way,
 * src/native/index.ts). `unknown` if there is none.
 */
export function packageVersion(start: string = dirname(fileURLToPath(import.meta.url))): string {
  let dir = start;
  for (;;) {
    const file = join(dir, "package.json");
    if (existsSync(file)) {
      try {
        const pkg = JSON.parse(readFileSync(file, "utf8")) as { name?: unknown; version?: unknown };
        if (pkg.name === PACKAGE_NAME && typeof pkg.version === "string") return pkg.version;
      } catch {
        // not ours or unreadable: keep looking upward
      }
    }
    const parent = dirname(dir);
    if (parent === dir) return "unknown";
    dir = parent;
  }
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
