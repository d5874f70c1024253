/**
 * A copy-on-write overlay over any backend (nbdkit's cow filter, as a wrapper in the style of
 * src/nbd/backend.ts): writes go into blocks of an overlay file and never reach the backend
 * below; zeroes and trims of whole blocks only mark them zero (no bytes written: a discard of the
 * whole device costs nothing), of partial blocks they are writes of zeroes. Reads take each block
 * from the overlay once written, as zeroes once zeroed, else from the backend. The overlay is an
 * unlinked temporary file: it takes space only while served and is
 * gone when the process ends, however it ends. Partial writes of a block fill the rest of it from
 * the backend first; writes are serialized among themselves (a read-modify-write of one block must
 * not interleave with another), reads run freely beside them.
 */
import { mkdtemp, open, rmdir, unlink, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import type { BackendExtent, NbdBackend } from "./backend.js";
import { writeFullyAt } from "../util/write-fully.js";

/** A block's state: the backend's, bytes in the overlay, or zeroes. */
const BASE = 0;
const DATA = 1;
const ZERO = 2;

export class CowBackend implements NbdBackend {
  readonly canMultiConn = true;
  readonly readOnly = false;
  /** Per block: BASE, DATA or ZERO. */
  private readonly state: Uint8Array;
  /** Blocks not BASE. */
  private changedBlocks = 0;
  private writes: Promise<void> = Promise.resolve();

  private constructor(
    private readonly base: NbdBackend,
    private readonly overlay: FileHandle,
    readonly blockBytes: number,
  ) {
    this.state = new Uint8Array(Math.ceil(base.size / blockBytes));
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

  private setState(block: number, state: number): void {
    if ((this.state[block] === BASE) !== (state === BASE)) this.changedBlocks += state === BASE ? -1 : 1;
    this.state[block] = state;
  }

  /** Whether any block of the range is not the backend's. */
  private touchesOverlay(offset: number, length: number): boolean {
    if (this.changedBlocks === 0) return false;
    const last = Math.floor((offset + length - 1) / this.blockBytes);
    for (let b = Math.floor(offset / this.blockBytes); b <= last; b++) if (this.state[b] !== BASE) return true;
    return false;
  }

  /** The end of the run of blocks in the same state as the one at `offset`, at most `end`. */
  private runEnd(offset: number, end: number): number {
    const bs = this.blockBytes;
    const state = this.state[Math.floor(offset / bs)];
    let runEnd = Math.min(end, (Math.floor(offset / bs) + 1) * bs);
    while (runEnd < end && this.state[Math.floor(runEnd / bs)] === state) runEnd = Math.min(end, runEnd + bs);
    return runEnd;
  }

  /** Untouched ranges go straight to the backend (synchronously when it answers so: the server's fast path). */
  read(offset: number, length: number, into: Buffer): Promise<void> | void {
    if (!this.touchesOverlay(offset, length)) return this.base.read(offset, length, into);
    return this.readMixed(offset, length, into);
  }

  private async readMixed(offset: number, length: number, into: Buffer): Promise<void> {
    const end = offset + length;
    for (let at = offset; at < end; ) {
      const runEnd = this.runEnd(at, end);
      const part = into.subarray(at - offset, runEnd - offset);
      const state = this.state[Math.floor(at / this.blockBytes)];
      if (state === DATA) await this.readOverlay(at, part);
      else if (state === ZERO) part.fill(0);
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

  /** Whole blocks are marked zero; the partial ones at the ends get zeroes written. */
  writeZeroes(offset: number, length: number): Promise<void> {
    return this.serialized(async () => {
      if (length === 0) return;
      const bs = this.blockBytes;
      const end = offset + length;
      const firstWhole = Math.ceil(offset / bs) * bs;
      const lastWhole = end === this.size ? end : Math.floor(end / bs) * bs;
      if (firstWhole >= lastWhole) return this.writeBlocks(offset, Buffer.alloc(length));
      if (offset < firstWhole) await this.writeBlocks(offset, Buffer.alloc(firstWhole - offset));
      for (let b = firstWhole / bs; b * bs < lastWhole; b++) this.setState(b, ZERO);
      if (lastWhole < end) await this.writeBlocks(lastWhole, Buffer.alloc(end - lastWhole));
    });
  }

  /** Discarded ranges read as zeroes from now on (the backend below is never changed). */
  trim(offset: number, length: number): Promise<void> {
    return this.writeZeroes(offset, length);
  }

  /** The overlay is temporary: nothing to make durable. */
  flush(): void {}

  /** Blocks only partly covered by `data` get the rest of their bytes first (the backend's, or zeroes). */
  private async writeBlocks(offset: number, data: Buffer): Promise<void> {
    const bs = this.blockBytes;
    const end = offset + data.length;
    const first = Math.floor(offset / bs);
    const last = Math.floor((end - 1) / bs);
    for (const block of first === last ? [first] : [first, last]) {
      const start = block * bs;
      const partial = offset > start || end < Math.min(start + bs, this.size);
      if (!partial || this.state[block] === DATA) continue;
      const whole = Buffer.alloc(Math.min(bs, this.size - start));
      if (this.state[block] === BASE) await this.base.read(start, whole.length, whole);
      await writeFullyAt(this.overlay, whole, start);
    }
    await writeFullyAt(this.overlay, data, offset);
    for (let b = first; b <= last; b++) this.setState(b, DATA);
  }

  /** Overlay data is data, zeroed blocks hole and zero; a run of untouched ones is what the backend says of it. */
  async blockStatus(offset: number, length: number): Promise<BackendExtent[]> {
    const runEnd = this.runEnd(offset, offset + length);
    const state = this.state[Math.floor(offset / this.blockBytes)];
    if (state === DATA || (state === BASE && !this.base.blockStatus)) return [{ length: runEnd - offset, flags: 0 }];
    if (state === ZERO) return [{ length: runEnd - offset, flags: 3 }];
    const extents = await this.base.blockStatus!(offset, runEnd - offset);
    return extents.length > 0 ? extents : [{ length: runEnd - offset, flags: 0 }];
  }

  close(): Promise<void> {
    return this.overlay.close();
  }
}
