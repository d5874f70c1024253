/**
 * Backup sets inside zip archives made with `-o -`, read in place: stored entries are
 * random-access windows of the archive file, so nothing is unpacked.
 */
import { open, type FileHandle } from "node:fs/promises";
import { basename } from "node:path";
import yauzl from "yauzl";
import { FileRangeSource, type RandomAccessSource } from "../format/source.js";
import type { BackupSetSource, SetFile } from "./set-source.js";

export interface ZipOpenOptions {
  /** Entries that must not be in two archives (the set's data files and their side files). */
  unique?: (name: string) => boolean;
}

interface ZipEntryRef {
  archive: string;
  zip: yauzl.ZipFile;
  entry: yauzl.Entry;
}

export class ZipSourceError extends Error {}

function openZip(path: string): Promise<yauzl.ZipFile> {
  return new Promise((resolve, reject) =>
    yauzl.open(path, { lazyEntries: true, autoClose: false, decodeStrings: true }, (err, zip) =>
      err ? reject(new ZipSourceError(`${path}: not a readable zip archive: ${err.message}`)) : resolve(zip!),
    ),
  );
}

function readEntries(zip: yauzl.ZipFile): Promise<yauzl.Entry[]> {
  return new Promise((resolve, reject) => {
    const entries: yauzl.Entry[] = [];
    zip.on("entry", (e: yauzl.Entry) => {
      entries.push(e);
      zip.readEntry();
    });
    zip.on("end", () => resolve(entries));
    zip.on("error", reject);
    zip.readEntry();
  });
}

export class ZipSource implements BackupSetSource {
  private constructor(
    readonly location: string,
    private readonly entries: Map<string, ZipEntryRef>,
    private readonly zips: yauzl.ZipFile[],
    private readonly handles: Map<string, FileHandle>,
  ) {}

  /**
   * One or more archives; later archives' entries win on a name clash (a chain's side files
   * repeat), except `unique` ones: one of those in two archives is refused, naming both.
   */
  static async open(archives: string[], options: ZipOpenOptions = {}): Promise<ZipSource> {
    const entries = new Map<string, ZipEntryRef>();
    const zips: yauzl.ZipFile[] = [];
    const handles = new Map<string, FileHandle>();
    try {
      for (const archive of archives) {
        const zip = await openZip(archive);
        zips.push(zip);
        handles.set(archive, await open(archive, "r"));
        for (const entry of await readEntries(zip)) {
          if (entry.fileName.endsWith("/")) continue;
          const earlier = entries.get(entry.fileName);
          if (earlier && options.unique?.(entry.fileName)) {
            throw new ZipSourceError(`[${entry.fileName}] is in both [${basename(earlier.archive)}] and [${basename(archive)}]`);
          }
          entries.set(entry.fileName, { archive, zip, entry });
        }
      }
    } catch (e) {
      for (const z of zips) z.close();
      for (const h of handles.values()) await h.close();
      throw e;
    }
    const location = archives.length === 1 ? archives[0]! : archives.map((a) => basename(a)).join(",");
    return new ZipSource(location, entries, zips, handles);
  }

  async list(): Promise<SetFile[]> {
    return [...this.entries.values()].map(({ entry }) => ({
      name: entry.fileName,
      size: entry.uncompressedSize,
      mtimeMs: entry.getLastModDate().getTime(),
    }));
  }

  private ref(name: string): ZipEntryRef {
    const ref = this.entries.get(name);
    if (!ref) throw new ZipSourceError(`${this.location}: no entry ${name}`);
    return ref;
  }

  async open(name: string): Promise<RandomAccessSource> {
    const { archive, zip, entry } = this.ref(name);
    if (entry.compressionMethod !== 0) {
      throw new ZipSourceError(`${archive}:${name}: entry is compressed (method ${entry.compressionMethod}); only stored entries can be read in place`);
    }
    const header = await new Promise<{ fileDataStart: number }>((resolve, reject) =>
      zip.readLocalFileHeader(entry, { minimal: true }, (err, h) => (err ? reject(err) : resolve(h as { fileDataStart: number }))),
    );
    return new FileRangeSource(`${archive}:${name}`, this.handles.get(archive)!, header.fileDataStart, entry.uncompressedSize, false);
  }

  async readFile(name: string): Promise<Buffer> {
    const { zip, entry } = this.ref(name);
    const stream = await new Promise<NodeJS.ReadableStream>((resolve, reject) =>
      zip.openReadStream(entry, (err, s) => (err ? reject(err) : resolve(s!))),
    );
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  shownName(name: string): string {
    const ref = this.entries.get(name);
    return ref ? `${ref.archive}:${name}` : `${this.location}:${name}`;
  }

  pathOf(): null {
    return null;
  }

  async close(): Promise<void> {
    for (const z of this.zips) z.close();
    for (const h of this.handles.values()) await h.close();
  }
}
