/** Temporary directories removed after the test (also when it fails). */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";

export async function tempDir(t: TestContext | { after: (fn: () => Promise<void>) => void }, prefix = "vnbt-"): Promise<string> {
  const dir = await mkdtemp(join(process.env["VNBT_TMPDIR"] ?? tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}
