/** `virtnbdrestore -o dump`: the metadata of every stream file, as the original prints it (docs/behaviour.md, "Dump and verify"). */
import { StreamReader } from "../format/reader.js";
import { isRawImage } from "./raw-image.js";
import type { BackupSetSource, SetFile } from "../storage/set-source.js";
import { pythonJsonDumps, type PyJson } from "../util/python-json.js";

export interface DumpLog {
  info(message: string): void;
  error(message: string): void;
}

/**
 * The JSON text for stdout, and whether a file could not be read (logged as ERROR, left out:
 * exit 1). Raw images have no metadata: said at INFO and left out.
 */
export async function dumpMetadata(set: BackupSetSource, files: SetFile[], log: DumpLog): Promise<{ text: string; failed: boolean }> {
  const metas: PyJson[] = [];
  let failed = false;
  for (const file of files) {
    let source;
    try {
      source = await set.open(file.name);
      if (await isRawImage(source)) {
        log.info(`Raw image, no stream metadata: [${file.name}]`);
        continue;
      }
      const reader = await StreamReader.open(source, { trailer: false });
      if (reader.compressed) log.info(`Compressed stream found: [${reader.meta.compressionMethod}].`);
      metas.push(reader.rawMeta as PyJson);
    } catch (e) {
      log.error(`Reading metadata from [${file.name}] failed: ${(e as Error).message}`);
      failed = true;
    } finally {
      await source?.close();
    }
  }
  return { text: pythonJsonDumps(metas, 4), failed };
}
