/** `virtnbdrestore -o dump`: the metadata of every stream file, as the original prints it. */
import { StreamReader } from "../format/reader.js";
import type { BackupSetSource, SetFile } from "../storage/set-source.js";
import { pythonJsonDumps, type PyJson } from "../util/python-json.js";

export interface DumpLog {
  info(message: string): void;
  error(message: string): void;
}

/** Returns the JSON text for stdout; unreadable files are logged and left out (exit stays 0). */
export async function dumpMetadata(set: BackupSetSource, files: SetFile[], log: DumpLog): Promise<string> {
  const metas: PyJson[] = [];
  for (const file of files) {
    let source;
    try {
      source = await set.open(file.name);
      const reader = await StreamReader.open(source, { trailer: false });
      if (reader.compressed) log.info(`Compressed stream found: [${reader.meta.compressionMethod}].`);
      metas.push(reader.rawMeta as PyJson);
    } catch (e) {
      log.error(`Reading metadata from [${file.name}] failed: ${(e as Error).message}`);
    } finally {
      await source?.close();
    }
  }
  return pythonJsonDumps(metas, 4);
}
