/** Copies a raw image into a new local file, leaving all-zero blocks as holes. */
import { open, rm } from "node:fs/promises";
import { readExactly, type RandomAccessSource } from "../format/source.js";
import { moveInto, partialPath } from "../storage/durable.js";
import { writeFullyAt } from "../util/write-fully.js";

const BLOCK = 1 << 20;

function allZero(buf: Buffer, n: number): boolean {
  for (let i = 0; i < n; i += 8) if (buf.readBigUInt64LE(Math.min(i, n - 8)) !== 0n) return false;
  return true;
}

export async function copySparse(source: RandomAccessSource, target: string): Promise<void> {
  const partial = partialPath(target);
  const fh = await open(partial, "wx", 0o600);
  try {
    await fh.truncate(source.size);
    const buf = Buffer.allocUnsafeSlow(BLOCK);
    for (let pos = 0; pos < source.size; pos += BLOCK) {
      const n = Math.min(BLOCK, source.size - pos);
      await readExactly(source, buf, 0, n, pos);
      if (n >= 8 && allZero(buf, n)) continue;
      await writeFullyAt(fh, buf, pos, n);
    }
    await fh.sync();
  } catch (e) {
    await fh.close();
    await rm(partial, { force: true });
    throw e;
  }
  await fh.close();
  await moveInto(partial, target, false);
}
