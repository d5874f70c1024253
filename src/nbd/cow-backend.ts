/**
 * A copy-on-write overlay over any backend (nbdkit's cow filter, as a wrapper in the style of
 * src/nbd/backend.ts): writes, zeroes and trims go into blocks of an overlay file and never reach
 * the backend below; reads take each block from the overlay once it was written, else from the
 * backend. The overlay is an unlinked temporary file: it takes space only while served and is
 * gone when the process ends, however it ends. Partial writes of a block fill the rest of it from
 * the backend first; writes are serialized among themselves (a read-modify-write of one block must
 * not interleave with another), reads run freely beside them.
 */
import { mkdtemp, open, rmdir, unlink, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import type { BackendExtent, NbdBackend } from "./backend.js";
import { writeFullyAt } from "../util/write-fully.js";

export class CowBackend implements NbdBackend {
  readonly canMultiConn = true;
  readonly readOnly = false;
  private readonly written: Uint8Array;
  private writtenBlocks = 0;
  private writes: Promise<void> = Promise.resolve();

  private constructor(
    private readonly base: NbdBackend,
    private readonly overlay: FileHandle,
    readonly blockBytes: number,
  ) {
    this.written = new Uint8Array(Math.ceil(base.size / blockBytes));
  }

  /** An overlay of `blockBytes` blocks (a power of two) over `base`, its file made in `dir`. */
  static async create(base: NbdBackend, o: { dir: string; blockBytes: number }): Promise<CowBackend> {
    const tmp = await mkdtemp(join(o.dir, "overlay-"));
    const path = join(tmp, "overlay");
    const fh = await open(path, "w+", 0o600);
    await unlink(path);
    await rmdir(tmp);
    return new CowBackend(base, fh, o.blockBytes);
  }

  get size(): number {
    return this.base.size;
  }

  get description(): string | undefined {
    return this.base.description;
  }

  get blockSize(): { minimum: number; preferred: number; maximum: number } {
    return { minimum: 1, preferred: this.blockBytes, maximum: this.base.blockSize?.maximum ?? 32 * 1024 * 1024 };
  }

  private isWritten(block: number): boolean {
    return this.written[block] === 1;
  }

  /** Whether any block of the range is in the overlay. */
  private touchesOverlay(offset: number, length: number): boolean {
    if (this.writtenBlocks === 0) return false;
    const last = Math.floor((offset + length - 1) / this.blockBytes);
    for (let b = Math.floor(offset / this.blockBytes); b <= last; b++) if (this.isWritten(b)) return true;
    return false;
  }

  /** Untouched ranges go straight to the backend (synchronously when it answers so: the server's fast path). */
  read(offset: number, length: number, into: Buffer): Promise<void> | void {
    if (!this.touchesOverlay(offset, length)) return this.base.read(offset, length, into);
    return this.readMixed(offset, length, into);
  }

  private async readMixed(offset: number, length: number, into: Buffer): Promise<void> {
    const bs = this.blockBytes;
    let at = offset;
    const end = offset + length;
    while (at < end) {
      const block = Math.floor(at / bs);
      const fromOverlay = this.isWritten(block);
      let runEnd = Math.min(end, (block + 1) * bs);
      while (runEnd < end && this.isWritten(Math.floor(runEnd / bs)) === fromOverlay) runEnd = Math.min(end, runEnd + bs);
      const part = into.subarray(at - offset, runEnd - offset);
      if (fromOverlay) await this.readOverlay(at, part);
      else await this.base.read(at, part.length, part);
      at = runEnd;
    }
  }

  private async readOverlay(offset: number, into: Buffer): Promise<void> {
    let pos = 0;
    while (pos < into.length) {
      const { bytesRead } = await this.overlay.read(into, pos, into.length - pos, offset + pos);
      if (bytesRead === 0) {
        into.fill(0, pos);
        return;
      }
      pos += bytesRead;
    }
  }

  /** Runs `fn` after every earlier write (and before every later one). */
  private serialized(fn: () => Promise<void>): Promise<void> {
    const run = this.writes.then(fn);
    this.writes = run.catch(() => undefined);
    return run;
  }

  write(offset: number, data: Buffer): Promise<void> {
    return this.serialized(() => this.writeBlocks(offset, data));
  }

  writeZeroes(offset: number, length: number): Promise<void> {
    return this.serialized(async () => {
      const chunk = Math.min(length, 4 * 1024 * 1024);
      const zeros = Buffer.alloc(chunk);
      for (let at = 0; at < length; at += chunk) await this.writeBlocks(offset + at, zeros.subarray(0, Math.min(chunk, length - at)));
    });
  }

  /** Discarded ranges read as zeroes from now on (the backend below is never changed). */
  trim(offset: number, length: number): Promise<void> {
    return this.writeZeroes(offset, length);
  }

  /** The overlay is temporary: nothing to make durable. */
  flush(): void {}

  private async writeBlocks(offset: number, data: Buffer): Promise<void> {
    const bs = this.blockBytes;
    const end = offset + data.length;
    const first = Math.floor(offset / bs);
    const last = Math.floor((end - 1) / bs);
    for (const block of first === last ? [first] : [first, last]) {
      const start = block * bs;
      const partial = offset > start || end < Math.min(start + bs, this.size);
      if (partial && !this.isWritten(block)) {
        const len = Math.min(bs, this.size - start);
        const whole = Buffer.allocUnsafe(len);
        await this.base.read(start, len, whole);
        await writeFullyAt(this.overlay, whole, start);
      }
    }
    await writeFullyAt(this.overlay, data, offset);
    for (let b = first; b <= last; b++) {
      if (this.written[b] === 0) this.writtenBlocks++;
      this.written[b] = 1;
    }
  }

  /** Written blocks are data; a run of untouched ones is what the backend says of it. */
  async blockStatus(offset: number, length: number): Promise<BackendExtent[]> {
    const bs = this.blockBytes;
    const end = offset + length;
    const written = this.isWritten(Math.floor(offset / bs));
    let runEnd = Math.min(end, (Math.floor(offset / bs) + 1) * bs);
    while (runEnd < end && this.isWritten(Math.floor(runEnd / bs)) === written) runEnd = Math.min(end, runEnd + bs);
    if (written || !this.base.blockStatus) return [{ length: runEnd - offset, flags: 0 }];
    const extents = await this.base.blockStatus(offset, runEnd - offset);
    return extents.length > 0 ? extents : [{ length: runEnd - offset, flags: 0 }];
  }

  close(): Promise<void> {
    return this.overlay.close();
  }
}
