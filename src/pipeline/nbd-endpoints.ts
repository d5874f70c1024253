/**
 * Our NBD client as the copy engines' block reader (backup) and block writer (restore). The
 * client's errors pass through unchanged: they already name the export, offset and errno.
 */
import type { NbdClient } from "../nbd/index.js";
import type { BlockReader, BlockWriter } from "./types.js";

export function nbdReader(client: NbdClient): BlockReader {
  return {
    read: async (offset, into) => {
      await client.read(offset, into.length, into);
    },
  };
}

/**
 * `zero` is NBD write-zeroes (the client writes zero buffers where the server lacks it);
 * `flush` is an NBD flush where the server supports it, else nothing (upstream: "flush if
 * supported").
 */
export function nbdWriter(client: NbdClient): BlockWriter {
  return {
    write: (offset, data) => client.write(offset, data),
    zero: (offset, length) => client.writeZeroes(offset, length),
    flush: async () => {
      if (client.info.canFlush) await client.flush();
    },
  };
}
