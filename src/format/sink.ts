/** Where a stream's bytes go. `write` resolves when the chunk is consumed; the caller may then reuse it. */
export interface ByteSink {
  write(chunk: Uint8Array): Promise<void>;
}
