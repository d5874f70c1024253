/** Builds stream files from extent lists for tests (uses our writer). */
import { StreamWriter } from "../../src/format/writer.js";
import { lz4Compress, lz4CompressBound } from "../../src/format/lz4.js";
import type { StreamMetadata } from "../../src/format/metadata.js";
import { MemorySink } from "./memory-streams.js";
import type { IntegrityRecorder } from "../../src/format/integrity.js";

export type TestExtent = { start: number; data: Buffer } | { start: number; zero: number };

export interface BuildOptions {
  virtualSize: number;
  compressLevel?: number;
  chunkSize?: number;
  meta?: Partial<StreamMetadata>;
  /** Records frames and data CRCs for an `.integrity` file. */
  integrity?: IntegrityRecorder;
}

export async function buildStream(extents: TestExtent[], o: BuildOptions): Promise<Buffer> {
  const chunkSize = o.chunkSize ?? 32 * 1024 * 1024;
  const compressed = o.compressLevel !== undefined;
  const sink = new MemorySink();
  const w = new StreamWriter(sink, { compressed, chunkSize, integrity: o.integrity });
  const dataSize = extents.reduce((a, e) => a + ("data" in e ? e.data.length : 0), 0);
  await w.meta({
    virtualSize: o.virtualSize,
    dataSize,
    date: "2026-01-02T03:04:05.678901",
    diskName: "sda",
    diskFormat: "qcow2",
    checkpointName: "virtnbdbackup.0",
    compressed: compressed ? o.compressLevel! : false,
    compressionMethod: "lz4",
    parentCheckpoint: "",
    incremental: false,
    streamVersion: 2,
    ...o.meta,
  });
  for (const e of extents) {
    if ("zero" in e) {
      await w.zero(e.start, e.zero);
      continue;
    }
    await w.beginData(e.start, e.data.length);
    const pieces = e.data.length >= chunkSize ? Math.ceil(e.data.length / chunkSize) : 1;
    for (let i = 0; i < pieces; i++) {
      const piece = e.data.subarray(i * chunkSize, pieces === 1 ? e.data.length : (i + 1) * chunkSize);
      if (!compressed) {
        await w.payload(piece);
        continue;
      }
      const out = Buffer.alloc(lz4CompressBound(piece.length));
      const n = await lz4Compress(piece, out, o.compressLevel!);
      await w.payload(out.subarray(0, n));
    }
    await w.endData();
  }
  await w.finish();
  return sink.bytes();
}

/** Applies a stream's data frames onto a zero-filled disk image (reference decoder for tests). */
export function pattern(length: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}
