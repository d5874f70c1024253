/**
 * This package's root: the first directory above `start` whose package.json is named
 * `virtnbdbackup-ts`. The same lookup works from the sources, tsc's output, the bundles
 * (dist/bin/*.cjs) and an installed package, which always carries its package.json.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";

export const PACKAGE_NAME = "virtnbdbackup-ts";

/** The root directory and its package.json, or null when there is none above `start`. */
export function findPackage(start: string): { root: string; json: { name?: unknown; version?: unknown } } | null {
  for (let dir = start; ; dir = dirname(dir)) {
    const file = join(dir, "package.json");
    if (existsSync(file)) {
      try {
        const json = JSON.parse(readFileSync(file, "utf8")) as { name?: unknown; version?: unknown };
        if (json.name === PACKAGE_NAME) return { root: dir, json };
      } catch {
        // not ours or unreadable: keep looking upward
      }
    }
    if (dirname(dir) === dir) return null;
  }
}
