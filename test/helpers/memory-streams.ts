/** In-memory ByteSink and RandomAccessSource for format tests. */
import type { ByteSink } from "../../src/format/sink.js";
import type { RandomAccessSource } from "../../src/format/source.js";

export class MemorySink implements ByteSink {
  private readonly chunks: Buffer[] = [];
  async write(chunk: Uint8Array): Promise<void> {
    this.chunks.push(Buffer.from(chunk)); // copy: the writer reuses its buffers
  }
  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

export class MemorySource implements RandomAccessSource {
  constructor(
    private readonly data: Buffer,
    readonly name = "memory.data",
  ) {}
  get size(): number {
    return this.data.length;
  }
  async read(buf: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    if (position >= this.data.length) return 0;
    const n = Math.min(length, this.data.length - position);
    this.data.copy(buf, offset, position, position + n);
    return n;
  }
  async close(): Promise<void> {}
}
