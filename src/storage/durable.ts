/** Durable file operations: fsync of files and directories, rename that never replaces. */
import { link, open, rename, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import { isObjectPath, shownPath } from "./object-path.js";
import { TargetExistsError } from "./target.js";
import { ObjectExistsError, rename as renameObject, stat as statObject, writeObject } from "./s3/store.js";

/** `<path>.partial`: a file being written; it gets its real name once complete and durable. */
export const partialPath = (path: string): string => `${path}.partial`;
export const isPartialPath = (path: string): boolean => path.endsWith(".partial");

/** Objects are durable once the server answered: nothing to do for an `s3://` folder. */
export async function fsyncDirectory(dir: string): Promise<void> {
  if (isObjectPath(dir)) return;
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export { TargetExistsError };

/**
 * Moves `from` to `to`. Without `replace`, fails with TargetExistsError if `to` exists
 * (link + unlink: atomic, never clobbers). The directory is fsynced afterwards.
 */
export async function moveInto(from: string, to: string, replace: boolean): Promise<void> {
  if (isObjectPath(to)) {
    const taken = !replace && (await statObject(to).then(() => true, () => false));
    if (taken) throw new TargetExistsError(shownPath(to));
    return renameObject(from, to);
  }
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

/** An I/O error that names the file it happened on (`code` kept: ENOSPC, EIO, …). */
export function fileError(e: unknown, path: string): Error {
  const err = e as NodeJS.ErrnoException;
  if (!(err instanceof Error) || err instanceof TargetExistsError || err.message.includes(path)) return err as Error;
  const wrapped: NodeJS.ErrnoException = new Error(`Unable to write [${path}]: ${err.message}`);
  wrapped.code = err.code;
  wrapped.errno = err.errno;
  return wrapped;
}

/** Writes a small file completely and durably: `<path>.partial`, fsync, move into place. */
export async function writeFileDurably(path: string, data: string | Uint8Array, replace: boolean): Promise<void> {
  if (isObjectPath(path)) {
    // One PUT: the object appears whole or not at all.
    return writeObject(path, data, replace).catch((e) => Promise.reject(e instanceof ObjectExistsError ? new TargetExistsError(shownPath(path)) : e));
  }
  const tmp = partialPath(path);
  try {
    const fh = await open(tmp, "w", 0o600);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (e) {
    // A half-written small file is no evidence of anything (data files keep their `.partial`).
    await unlink(tmp).catch(() => undefined);
    throw fileError(e, tmp);
  }
  await moveInto(tmp, path, replace);
}
