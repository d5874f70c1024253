/** The `.chksum` of a data file in a backup set (directory or zip), or null when it has none. */
import { parseChecksum } from "../format/checksum.js";
import type { BackupSetSource } from "../storage/set-source.js";
import { checksumFileName } from "./layout.js";

export async function storedChecksum(set: BackupSetSource, name: string): Promise<number | null> {
  const file = checksumFileName(name);
  if (!(await set.list()).some((f) => f.name === file)) return null;
  return parseChecksum((await set.readFile(file)).toString("latin1"), file);
}
