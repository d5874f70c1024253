/**
 * A raw image file as an export (positional reads/writes, fsync for flush). Allocation is
 * not reported (Node has no SEEK_DATA), so every range is data.
 */
import { open, type FileHandle } from "node:fs/promises";
import type { NbdBackend } from "./backend.js";
import { writeFullyAt } from "../util/write-fully.js";

export class FileBackend implements NbdBackend {
  readonly canMultiConn = true;

  private constructor(
    private readonly fh: FileHandle,
    readonly size: number,
    readonly readOnly: boolean,
  ) {}

  static async open(path: string, opts: { readOnly?: boolean } = {}): Promise<FileBackend> {
    const readOnly = opts.readOnly ?? false;
    const fh = await open(path, readOnly ? "r" : "r+");
    try {
      const st = await fh.stat();
      return new FileBackend(fh, st.size, readOnly);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  async read(offset: number, length: number, into: Buffer): Promise<void> {
    let pos = 0;
    while (pos < length) {
      const { bytesRead } = await this.fh.read(into, pos, length - pos, offset + pos);
      if (bytesRead === 0) {
        into.fill(0, pos, length);
        return;
      }
      pos += bytesRead;
    }
  }

  get write(): ((offset: number, data: Buffer) => Promise<void>) | undefined {
    if (this.readOnly) return undefined;
    return (offset: number, data: Buffer): Promise<void> => writeFullyAt(this.fh, data, offset);
  }

  async flush(): Promise<void> {
    await this.fh.sync();
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}
