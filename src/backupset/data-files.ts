/** Which stream files of a set to look at, in the original's order (by mtime, oldest first). */
import type { BackupSetSource, SetFile } from "../storage/set-source.js";
import { isDataFileName } from "./layout.js";

export interface DataFileSelection {
  /** `--sequence`: exactly these names, in this order. */
  sequence?: string[];
  /** `-d/--disk`: only files whose name starts with this. */
  disk?: string;
}

export class DataFileError extends Error {}

const byMtime = (a: SetFile, b: SetFile) => a.mtimeMs - b.mtimeMs || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

export async function selectDataFiles(set: BackupSetSource, selection: DataFileSelection): Promise<SetFile[]> {
  const all = await set.list();
  let files: SetFile[];
  if (selection.sequence && selection.sequence.length > 0) {
    const byName = new Map(all.map((f) => [f.name, f]));
    files = selection.sequence.map((name) => {
      const f = byName.get(name);
      if (!f) throw new DataFileError(`File [${name}] of the sequence not found in [${set.location}]`);
      return f;
    });
  } else {
    files = all.filter((f) => !f.name.includes("/") && isDataFileName(f.name)).sort(byMtime);
  }
  if (selection.disk) files = files.filter((f) => f.name.startsWith(selection.disk!));
  return files;
}
