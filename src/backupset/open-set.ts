/**
 * Opens what `-i/--input` names: a backup directory, a zip archive made with `-o -`, or a
 * directory holding such archives (a chain of zips, read together in place).
 */
import { readdir, stat } from "../storage/files.js";
import { join } from "node:path";
import { DirectorySource } from "../storage/directory-source.js";
import type { BackupSetSource } from "../storage/set-source.js";
import { ZipSource } from "../storage/zip-source.js";
import { isDataFileName, mentionsDataFile } from "./layout.js";

export class SetNotFoundError extends Error {}

export async function openBackupSet(input: string): Promise<BackupSetSource> {
  let info;
  try {
    info = await stat(input);
  } catch {
    throw new SetNotFoundError(`Backup source [${input}] does not exist.`);
  }
  if (info.isFile()) return ZipSource.open([input]);
  const names = await readdir(input);
  const hasData = names.some(isDataFileName);
  const zips = names.filter((n) => n.endsWith(".zip")).sort();
  // Two archives with the same data file (two fulls of one disk): refused, naming both.
  if (!hasData && zips.length > 0) return ZipSource.open(zips.map((z) => join(input, z)), { unique: mentionsDataFile });
  return new DirectorySource(input);
}
