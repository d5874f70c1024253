/**
 * The NBD client seen through the copy engines' small interfaces (src/pipeline/types.ts:
 * `BlockReader`, `BlockWriter`); declared structurally here so the layers stay independent.
 */
import type { NbdClient } from "./client.js";

export interface NbdBlockReader {
  /** Fills all of `into` with the bytes at `offset`. */
  read(offset: number, into: Buffer): Promise<void>;
}

export interface NbdBlockWriter {
  write(offset: number, data: Buffer): Promise<void>;
  /** Makes the range read as zeros (write-zeroes, or zero buffers when unsupported). */
  zero(offset: number, length: number): Promise<void>;
  /** NBD flush when the server supports it, else a no-op (upstream: "flush if supported"). */
  flush(): Promise<void>;
}

export function blockReader(client: NbdClient): NbdBlockReader {
  return {
    read: async (offset, into) => {
      await client.read(offset, into.length, into);
    },
  };
}

export function blockWriter(client: NbdClient): NbdBlockWriter {
  return {
    write: (offset, data) => client.write(offset, data),
    zero: (offset, length) => client.writeZeroes(offset, length),
    flush: async () => {
      if (client.info.canFlush) await client.flush();
    },
  };
}
