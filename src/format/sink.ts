/**
 * Where a stream's bytes go. `write` resolves when the chunk is consumed; the caller may then
 * reuse it. Several writes may be in flight: bytes land in the order of the `write` calls.
 */
export interface ByteSink {
  write(chunk: Uint8Array): Promise<void>;
}
