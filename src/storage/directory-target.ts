/** Backup files in a directory: `<name>.partial`, then fsync and a no-replace move into place. */
import { mkdir, open, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import type { BackupTarget, TargetFile } from "./target.js";
import { fileError, moveInto, writeFileDurably } from "./durable.js";
import { EarlyWriteback } from "./writeback.js";

class PartialFile implements TargetFile {
  private done = false;
  /** Next append position: writes are positional, so several may be in flight in order. */
  private position = 0;
  private readonly writeback: EarlyWriteback;
  constructor(
    private readonly fh: FileHandle,
    readonly location: string,
    private readonly finalPath: string,
    private readonly replace: boolean,
  ) {
    this.writeback = new EarlyWriteback(fh.fd);
  }

  async write(chunk: Uint8Array): Promise<void> {
    const base = this.position;
    this.position += chunk.length;
    await this.writeback.advance(base);
    try {
      for (let at = 0; at < chunk.length; ) {
        const { bytesWritten } = await this.fh.write(chunk, at, chunk.length - at, base + at);
        at += bytesWritten;
      }
    } catch (e) {
      throw fileError(e, this.location);
    }
  }

  async commit(): Promise<void> {
    if (this.done) throw new Error(`${this.location}: already closed`);
    this.done = true;
    await this.writeback.drain(); // never on a closed descriptor
    try {
      try {
        await this.fh.sync();
      } finally {
        await this.fh.close();
      }
    } catch (e) {
      throw fileError(e, this.location);
    }
    await moveInto(this.location, this.finalPath, this.replace);
  }

  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.writeback.drain();
    await this.fh.close().catch(() => undefined);
  }
}

export class DirectoryTarget implements BackupTarget {
  readonly isArchive = false;
  constructor(readonly directory: string) {}

  static async create(directory: string): Promise<DirectoryTarget> {
    await mkdir(directory, { recursive: true });
    return new DirectoryTarget(directory);
  }

  async createFile(name: string, options: { replace?: boolean } = {}): Promise<TargetFile> {
    const finalPath = join(this.directory, name);
    const partial = `${finalPath}.partial`;
    const fh = await open(partial, "w", 0o600);
    return new PartialFile(fh, partial, finalPath, options.replace ?? false);
  }

  async putFile(name: string, data: string | Uint8Array, options: { replace?: boolean } = {}): Promise<void> {
    await writeFileDurably(join(this.directory, name), data, options.replace ?? false);
  }

  async close(): Promise<void> {}
}
