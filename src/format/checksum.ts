/** Adler-32 over every byte of a data file, stored as decimal text in `<datafile>.chksum`. */
import { native } from "../native/index.js";
import { readExactly, type RandomAccessSource } from "./source.js";

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

/** Continues `sum` (1: a fresh checksum) over bytes `[start, end)` of `source`, a buffer at a time. */
export async function adler32Range(source: RandomAccessSource, start: number, end: number, sum = 1, buf?: Buffer): Promise<number> {
  if (source.adler32) return (await source.adler32(start, end, sum)) >>> 0;
  const b = buf ?? Buffer.allocUnsafe(Math.max(1, Math.min(4 << 20, end - start)));
  for (let pos = start; pos < end; ) {
    const n = Math.min(b.length, end - pos);
    await readExactly(source, b, 0, n, pos);
    sum = native.adler32(sum, b, 0, n);
    pos += n;
  }
  return sum >>> 0;
}

/** The checksum a `.chksum` file holds (decimal text); `file` names it in the error. */
export function parseChecksum(text: string, file: string): number {
  const t = text.trim();
  if (!/^\d{1,10}$/.test(t) || Number(t) > 0xffffffff) throw new Error(`Checksum file [${file}] does not hold a checksum: ${JSON.stringify(t.slice(0, 40))}`);
  return Number(t);
}
