/**
 * What `-f` names: stream files, or streams inside zip archives made with `-o -` (read in
 * place, nothing unpacked). A list item is
 *   - a path to a stream file (`/backup/sda.full.data`);
 *   - a zip archive holding exactly one `.data` entry (`/backup/full.zip`);
 *   - `archive.zip:entry` for an archive with several disks (`/backup/full.zip:sdb.full.data`).
 */
import { open, stat } from "node:fs/promises";
import { basename } from "node:path";
import { isDataFileName } from "../backupset/layout.js";
import { openFileSource, type RandomAccessSource } from "../format/source.js";
import { ZipSource } from "../storage/zip-source.js";
import { isObjectPath, openSource, shownPath } from "../storage/files.js";

export class MapFileError extends Error {}

export interface ResolvedFile {
  /** As given on the command line. */
  given: string;
  /** The stream's file name (base name, or the zip entry name), used for chain roles. */
  name: string;
  source: RandomAccessSource;
  close(): Promise<void>;
}

async function isZip(path: string): Promise<boolean> {
  const fh = await open(path, "r");
  try {
    const head = Buffer.alloc(4);
    const { bytesRead } = await fh.read(head, 0, 4, 0);
    return bytesRead === 4 && head.readUInt32LE(0) === 0x04034b50;
  } finally {
    await fh.close();
  }
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

async function openZipEntry(given: string, archive: string, entry: string | null): Promise<ResolvedFile> {
  const zip = await ZipSource.open([archive]);
  try {
    if (entry === null) {
      const data = (await zip.list()).filter((f) => !f.name.includes("/") && isDataFileName(f.name));
      if (data.length !== 1) {
        throw new MapFileError(
          data.length === 0
            ? `Zip archive [${archive}] holds no backup data file.`
            : `Zip archive [${archive}] holds several data files (${data.map((f) => f.name).join(", ")}): ` +
                `name one as [${archive}:<entry>].`,
        );
      }
      entry = data[0]!.name;
    }
    const source = await zip.open(entry);
    return { given, name: basename(entry), source, close: () => zip.close() };
  } catch (e) {
    await zip.close();
    if (e instanceof MapFileError) throw e;
    throw new MapFileError(`[${given}]: ${(e as Error).message}`);
  }
}

/** A stream file in a bucket, read through ranged GETs and the process's bounded block cache. */
async function openObject(given: string): Promise<ResolvedFile> {
  let source: RandomAccessSource;
  try {
    source = await openSource(given);
  } catch (e) {
    throw new MapFileError(`[${shownPath(given)}]: ${(e as Error).message}`);
  }
  return { given, name: basename(given), source, close: () => source.close() };
}

/** Opens one `-f` item. */
export async function resolveMapFile(given: string): Promise<ResolvedFile> {
  if (isObjectPath(given)) return openObject(given);
  if (await isFile(given)) {
    if (await isZip(given)) return openZipEntry(given, given, null);
    const source = await openFileSource(given);
    return { given, name: basename(given), source, close: () => source.close() };
  }
  const colon = given.lastIndexOf(":");
  if (colon > 0) {
    const archive = given.slice(0, colon);
    if ((await isFile(archive)) && (await isZip(archive))) return openZipEntry(given, archive, given.slice(colon + 1));
  }
  throw new MapFileError(`[${given}]: [[Errno 2] No such file or directory: '${given}']`);
}
