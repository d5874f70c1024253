/** Positional writes that write every byte (a write may take fewer bytes than it was given). */
import type { FileHandle } from "node:fs/promises";

/** Writes `data[0, length)` at file offset `position`, however many calls it takes. */
export async function writeFullyAt(fh: FileHandle, data: Uint8Array, position: number, length = data.length): Promise<void> {
  for (let at = 0; at < length; ) {
    const { bytesWritten } = await fh.write(data, at, length - at, position + at);
    if (bytesWritten === 0) throw new Error(`write made no progress at offset ${position + at}`);
    at += bytesWritten;
  }
}
