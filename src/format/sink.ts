/**
 * Where a stream's bytes go. `write` resolves when the chunk is consumed; the caller may then
 * reuse it. Several writes may be in flight: bytes land in the order of the `write` calls.
 */
export interface ByteSink {
  write(chunk: Uint8Array): Promise<void>;
  /**
   * Optional: `write`, resolving with the chunk's Adler-32, for a sink that copies the bytes
   * anyway and sums them on the way (the data crosses memory once instead of twice).
   */
  writeSummed?(chunk: Uint8Array): Promise<number>;
}
