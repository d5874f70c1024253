/** Durable file operations: fsync of files and directories, rename that never replaces. */
import { link, open, rename, unlink } from "node:fs/promises";
import { dirname } from "node:path";

export async function fsyncDirectory(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export class TargetExistsError extends Error {
  constructor(readonly path: string) {
    super(`Target file already exists: [${path}], won't overwrite.`);
    this.name = "TargetExistsError";
  }
}

/**
 * Moves `from` to `to`. Without `replace`, fails with TargetExistsError if `to` exists
 * (link + unlink: atomic, never clobbers). The directory is fsynced afterwards.
 */
export async function moveInto(from: string, to: string, replace: boolean): Promise<void> {
  if (replace) {
    await rename(from, to);
  } else {
    try {
      await link(from, to);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EEXIST") throw new TargetExistsError(to);
      throw e;
    }
    await unlink(from);
  }
  await fsyncDirectory(dirname(to));
}

/** Writes a small file completely and durably: `<path>.partial`, fsync, move into place. */
export async function writeFileDurably(path: string, data: string | Uint8Array, replace: boolean): Promise<void> {
  const tmp = `${path}.partial`;
  const fh = await open(tmp, "w", 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await moveInto(tmp, path, replace);
}
