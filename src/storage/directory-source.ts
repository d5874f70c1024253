/** A backup set in a directory (top level plus one level of subdirectories such as `checkpoints/`). */
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { openFileSource, type RandomAccessSource } from "../format/source.js";
import type { BackupSetSource, SetFile } from "./set-source.js";

export class DirectorySource implements BackupSetSource {
  constructor(readonly location: string) {}

  async list(): Promise<SetFile[]> {
    const out: SetFile[] = [];
    const walk = async (rel: string, depth: number) => {
      for (const entry of await readdir(join(this.location, rel), { withFileTypes: true })) {
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
    return openFileSource(join(this.location, name));
  }

  readFile(name: string): Promise<Buffer> {
    return readFile(join(this.location, name));
  }

  pathOf(name: string): string {
    return join(this.location, name);
  }

  shownName(name: string): string {
    return this.pathOf(name);
  }

  async close(): Promise<void> {}
}
