/** Adler-32 over every byte of a data file, stored as decimal text in `<datafile>.chksum`. */
import { open, readFile } from "node:fs/promises";
import { native } from "../native/index.js";

export class Adler32 {
  value = 1;
  update(buf: Uint8Array, offset = 0, length = buf.length - offset): this {
    if (length > 0) this.value = native.adler32(this.value, buf, offset, length);
    return this;
  }
  /** The same on libuv's pool; `buf` must stay unchanged until it resolves. */
  async updateAsync(buf: Uint8Array): Promise<void> {
    if (buf.length > 0) this.value = await native.adler32Async(this.value, buf);
  }
}

export const checksumPath = (dataFile: string): string => `${dataFile}.chksum`;

/** Adler-32 of a whole file, read `bufferSize` bytes at a time. */
export async function fileAdler32(path: string, bufferSize = 1 << 20): Promise<number> {
  const fh = await open(path, "r");
  try {
    const buf = Buffer.allocUnsafe(Math.max(1, bufferSize));
    const sum = new Adler32();
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) return sum.value;
      sum.update(buf, 0, bytesRead);
    }
  } finally {
    await fh.close();
  }
}

export class ChecksumFileError extends Error {}

/** The stored checksum, or null when there is no `.chksum` file. */
export async function readChecksumFile(dataFile: string): Promise<number | null> {
  let text: string;
  try {
    text = await readFile(checksumPath(dataFile), "latin1");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw e;
  }
  const t = text.trim();
  if (!/^\d{1,10}$/.test(t) || Number(t) > 0xffffffff) {
    throw new ChecksumFileError(`${checksumPath(dataFile)}: not a checksum: ${JSON.stringify(text.slice(0, 40))}`);
  }
  return Number(t);
}
