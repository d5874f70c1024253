/** Random-access bytes of one stream file: a plain file, or a stored entry inside a zip. */
import { readSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { native } from "../native/index.js";

export interface RandomAccessSource {
  /** Shown in error messages (the file path, or `archive.zip:entry`). */
  readonly name: string;
  readonly size: number;
  read(buf: Uint8Array, offset: number, length: number, position: number): Promise<number>;
  /** Optional blocking variant (a plain pread on the event loop; for tiny page-cache reads). */
  readSync?(buf: Uint8Array, offset: number, length: number, position: number): number;
  /** Optional: Adler-32 of bytes [start, end) continuing `previous`, without reading them into a buffer (plain files). */
  adler32?(start: number, end: number, previous: number): Promise<number>;
  close(): Promise<void>;
}

export class ShortReadError extends Error {}

/** Reads exactly `length` bytes or throws ShortReadError. */
export async function readExactly(
  source: RandomAccessSource,
  buf: Uint8Array,
  offset: number,
  length: number,
  position: number,
): Promise<void> {
  let done = 0;
  while (done < length) {
    const n = await source.read(buf, offset + done, length - done, position + done);
    if (n <= 0) throw new ShortReadError(`${source.name}: unexpected end of file at byte ${position + done}`);
    done += n;
  }
}

/** readExactly with the source's blocking read (`readSync`, which it must have). */
export function readExactlySync(source: RandomAccessSource, buf: Uint8Array, offset: number, length: number, position: number): void {
  let done = 0;
  while (done < length) {
    const n = source.readSync!(buf, offset + done, length - done, position + done);
    if (n <= 0) throw new ShortReadError(`${source.name}: unexpected end of file at byte ${position + done}`);
    done += n;
  }
}

/** A window of `fh` starting at `base`, `size` bytes long. */
export class FileRangeSource implements RandomAccessSource {
  constructor(
    readonly name: string,
    private readonly fh: FileHandle,
    private readonly base: number,
    readonly size: number,
    private readonly ownsHandle: boolean,
  ) {}

  async read(buf: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    const n = Math.max(0, Math.min(length, this.size - position));
    if (n === 0) return 0;
    const { bytesRead } = await this.fh.read(buf, offset, n, this.base + position);
    return bytesRead;
  }

  readSync(buf: Uint8Array, offset: number, length: number, position: number): number {
    const n = Math.max(0, Math.min(length, this.size - position));
    if (n === 0) return 0;
    return readSync(this.fh.fd, buf, offset, n, this.base + position);
  }

  async adler32(start: number, end: number, previous: number): Promise<number> {
    if (end > this.size) throw new ShortReadError(`${this.name}: unexpected end of file at byte ${this.size}`);
    try {
      return await native.adler32FileAsync(this.fh.fd, this.base + start, this.base + end, previous);
    } catch (e) {
      throw new ShortReadError(`${this.name}: ${(e as Error).message}`);
    }
  }

  async close(): Promise<void> {
    if (this.ownsHandle) await this.fh.close();
  }
}

export async function openFileSource(path: string): Promise<RandomAccessSource> {
  const fh = await open(path, "r");
  try {
    const { size } = await fh.stat();
    return new FileRangeSource(path, fh, 0, size, true);
  } catch (e) {
    await fh.close();
    throw e;
  }
}
