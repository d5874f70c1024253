/**
 * A backup set in a directory (top level plus one level of subdirectories such as
 * `checkpoints/`), or in a bucket folder (`s3://…`, src/storage/files.ts).
 */
import { join } from "node:path";
import type { RandomAccessSource } from "../format/source.js";
import { isObjectPath, openSource, readdirEntries, readFile, shownPath, stat } from "./files.js";
import { listTree } from "./s3/store.js";
import type { BackupSetSource, SetFile } from "./set-source.js";

export class DirectorySource implements BackupSetSource {
  /**
   * The listing, read once: a source is opened per run to read a set, and the checks of each
   * data file ask for its `.chksum` and `.integrity` (a restore of a full + 30 incs listed the
   * directory ~90 times, a stat per file each: 0.3 s; a bucket, a LIST request each time).
   */
  private listing: Promise<SetFile[]> | null = null;

  constructor(readonly location: string) {}

  list(): Promise<SetFile[]> {
    this.listing ??= this.readListing();
    this.listing.catch(() => (this.listing = null)); // a failed listing is read again next time
    return this.listing;
  }

  private async readListing(): Promise<SetFile[]> {
    if (isObjectPath(this.location)) return listTree(this.location, 1);
    const out: SetFile[] = [];
    const walk = async (rel: string, depth: number) => {
      for (const entry of await readdirEntries(join(this.location, rel))) {
        const name = rel ? `${rel}/${entry.name}` : entry.name;
        if (entry.isDirectory()) {
          if (depth === 0) await walk(name, 1);
        } else if (entry.isFile()) {
          const s = await stat(join(this.location, name));
          out.push({ name, size: s.size, mtimeMs: s.mtimeMs });
        }
      }
    };
    await walk("", 0);
    return out;
  }

  open(name: string): Promise<RandomAccessSource> {
    return openSource(join(this.location, name));
  }

  readFile(name: string): Promise<Buffer> {
    return readFile(join(this.location, name));
  }

  /** A local path; null for objects (tools that need a file read them through us). */
  pathOf(name: string): string | null {
    return isObjectPath(this.location) ? null : join(this.location, name);
  }

  shownName(name: string): string {
    return shownPath(join(this.location, name));
  }

  async close(): Promise<void> {}
}
