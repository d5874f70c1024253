/**
 * The restore's output directory (docs/behaviour.md, "Restore"): refused when it is a file,
 * created when missing, and removed again after a failed run only when this run created it and
 * nothing was put into it.
 */
import { rmdir, stat } from "node:fs/promises";
import type { Host } from "../host/host.js";
import type { Logger } from "../report/log.js";

/** What `prepareOutputDir` did: whether the directory is this run's, for `removeIfUnused`. */
export interface OutputDir {
  path: string;
  createdByThisRun: boolean;
}

/** The original's words (Directory.create), with the path. */
export const notADirectoryMessage = (path: string): string => `Specified target [${path}] is a file, not a directory`;

/** Null: refused (logged as one ERROR line). */
export async function prepareOutputDir(host: Host, path: string, log: Logger): Promise<OutputDir | null> {
  if (await host.exists(path)) {
    if (!(await isDirectory(host, path))) {
      log.error(notADirectoryMessage(path));
      return null;
    }
    return { path, createdByThisRun: false };
  }
  await host.mkdir(path);
  return { path, createdByThisRun: true };
}

async function isDirectory(host: Host, path: string): Promise<boolean> {
  if (host.remote) return (await host.run("test", ["-d", path])).exitCode === 0;
  return (await stat(path)).isDirectory();
}

/**
 * After a failed run: removes the directory when this run created it and it is still empty
 * (`rmdir` refuses a non-empty one, so nothing else can go). Errors are ignored.
 */
export async function removeIfUnused(host: Host, dir: OutputDir | null): Promise<void> {
  if (!dir?.createdByThisRun) return;
  if (host.remote) await host.run("rmdir", ["--", dir.path]).catch(() => undefined);
  else await rmdir(dir.path).catch(() => undefined);
}
