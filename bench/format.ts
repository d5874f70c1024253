/**
 * Stream format benchmarks (issue: foundation), side by side in one run:
 *  1. writer + reader pass-through: 1 GiB of 4 MiB data extents written as a stream file
 *     (page cache, /var/tmp) and read back through StreamReader pieces.
 *  2. lz4 level 2 on the same 4 MiB blocks (64 blocks, each compressed LZ4_ROUNDS times): our
 *     addon (one thread; and async, four frames queued on libuv's pool, which keeps both
 *     cores busy) vs python-lz4's lz4.frame.compress (Debian python3-lz4, same liblz4).
 *
 *   node --import tsx bench/format.ts [--size=1G]
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { StreamWriter } from "../src/format/writer.js";
import { StreamReader } from "../src/format/reader.js";
import { openFileSource } from "../src/format/source.js";
import { native } from "../src/native/index.js";
import { BufferPool } from "../src/util/buffer-pool.js";

const MiB = 1 << 20;
const arg = (n: string, d: string) => process.argv.find((a) => a.startsWith(`--${n}=`))?.slice(n.length + 3) ?? d;
function parseSize(s: string): number {
  const m = /^(\d+)([MG]?)$/i.exec(s);
  if (!m) throw new Error(`bad size ${s}`);
  return Number(m[1]) * (m[2]!.toUpperCase() === "G" ? 1024 * MiB : m[2] ? MiB : 1);
}
const TOTAL = parseSize(arg("size", "1G"));
const BLOCK = 4 * MiB;
const LZ4_ROUNDS = 4;
/** Frames queued on libuv's pool at once (its default size is 4 threads). */
const LZ4_IN_FLIGHT = 4;

/** Mixed data: half incompressible, half text-like. */
function mixedBlock(seed: number): Buffer {
  const b = Buffer.allocUnsafe(BLOCK);
  let x = seed || 1;
  for (let i = 0; i < BLOCK / 2; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  const text = Buffer.from("virtnbdbackup bench line 0123456789 abcdefghijklmnopqrstuvwxyz\n");
  for (let i = BLOCK / 2; i < BLOCK; i += text.length) text.copy(b, i, 0, Math.min(text.length, BLOCK - i));
  return b;
}

async function passThrough(dir: string): Promise<{ write: number; read: number }> {
  const path = join(dir, "bench.data");
  const block = mixedBlock(7);
  const fh = await open(path, "w");
  let position = 0; // several writes may be in flight: positional, in call order (ByteSink contract)
  const sink = {
    async write(chunk: Uint8Array) {
      const base = position;
      position += chunk.length;
      for (let at = 0; at < chunk.length; ) at += (await fh.write(chunk, at, chunk.length - at, base + at)).bytesWritten;
    },
  };
  const writer = new StreamWriter(sink, { compressed: false, chunkSize: 32 * MiB });
  let t = performance.now();
  await writer.meta({
    virtualSize: TOTAL * 2, dataSize: TOTAL, date: "2026-01-01T00:00:00", diskName: "sda", diskFormat: "qcow2",
    checkpointName: "virtnbdbackup.0", compressed: false, compressionMethod: "lz4", parentCheckpoint: "", incremental: false, streamVersion: 2,
  });
  for (let off = 0; off < TOTAL; off += BLOCK) {
    await writer.beginData(off * 2, BLOCK);
    await writer.payload(block);
    await writer.endData();
    await writer.zero(off * 2 + BLOCK, BLOCK);
  }
  await writer.finish();
  await fh.close();
  const write = TOTAL / MiB / ((performance.now() - t) / 1000);

  t = performance.now();
  const source = await openFileSource(path);
  const reader = await StreamReader.open(source);
  const pool = BufferPool.fixed(BLOCK, 4);
  let n = 0;
  for await (const f of reader.frames()) {
    if (f.kind !== "data") continue;
    for await (const p of reader.pieces(f, pool)) {
      n += p.data.length;
      if (p.buffer) pool.release(p.buffer);
    }
  }
  await source.close();
  if (n !== TOTAL) throw new Error("short read");
  return { write, read: TOTAL / MiB / ((performance.now() - t) / 1000) };
}

function lz4Ours(blocks: Buffer[]): number {
  const out = Buffer.allocUnsafe(native.lz4CompressBound(BLOCK));
  const t = performance.now();
  for (let r = 0; r < LZ4_ROUNDS; r++) for (const b of blocks) native.lz4Compress(b, out, 2);
  return (LZ4_ROUNDS * blocks.length * BLOCK) / MiB / ((performance.now() - t) / 1000);
}

async function lz4OursAsync(blocks: Buffer[]): Promise<number> {
  const outs = Array.from({ length: LZ4_IN_FLIGHT }, () => Buffer.allocUnsafe(native.lz4CompressBound(BLOCK)));
  const total = LZ4_ROUNDS * blocks.length;
  const t = performance.now();
  // Each worker takes the next block as soon as its last one is done (no lockstep).
  let next = 0;
  const worker = async (out: Buffer) => {
    for (let i = next++; i < total; i = next++) await native.lz4CompressAsync(blocks[i % blocks.length]!, out, 2);
  };
  await Promise.all(outs.map(worker));
  return (total * BLOCK) / MiB / ((performance.now() - t) / 1000);
}

function lz4Python(dir: string, blocks: Buffer[]): number {
  const file = join(dir, "blocks.bin");
  writeFileSync(file, Buffer.concat(blocks));
  const script = `
import lz4.frame, time, sys
data = open(sys.argv[1], 'rb').read()
B = ${BLOCK}
blocks = [data[i:i+B] for i in range(0, len(data), B)]
t = time.perf_counter()
for r in range(${LZ4_ROUNDS}):
    for b in blocks:
        lz4.frame.compress(b, content_checksum=True, block_checksum=True, compression_level=2)
print(${LZ4_ROUNDS} * len(data) / ${MiB} / (time.perf_counter() - t))
`;
  return Number(execFileSync("/usr/bin/python3", ["-c", script, file], { encoding: "utf8" }).trim());
}

async function main() {
  mkdirSync("/var/tmp", { recursive: true });
  const dir = mkdtempSync("/var/tmp/vnb-bench-format-");
  try {
    const pt = await passThrough(dir);
    const blocks = Array.from({ length: 64 }, (_, i) => mixedBlock(i + 1));
    const ours = lz4Ours(blocks);
    const oursAsync = await lz4OursAsync(blocks);
    const py = lz4Python(dir, blocks);
    const rows = [
      ["stream writer (1 GiB of 4 MiB extents, to page cache)", `${pt.write.toFixed(0)} MB/s`, ""],
      ["stream reader (pieces, same file)", `${pt.read.toFixed(0)} MB/s`, ""],
      ["lz4 level 2, 4 MiB blocks: ours, 1 thread", `${ours.toFixed(0)} MB/s`, `${(ours / py).toFixed(2)}× python-lz4`],
      [`lz4 level 2, 4 MiB blocks: ours, async (${LZ4_IN_FLIGHT} queued, 2 cores)`, `${oursAsync.toFixed(0)} MB/s`, `${(oursAsync / py).toFixed(2)}× python-lz4`],
      ["lz4 level 2, 4 MiB blocks: python-lz4 (Debian)", `${py.toFixed(0)} MB/s`, "1.00×"],
    ];
    console.log(`format benchmark, ${new Date().toISOString()}, ${TOTAL / MiB} MiB`);
    for (const r of rows) console.log(`${r[0]!.padEnd(60)} ${r[1]!.padStart(12)}  ${r[2]}`);
    mkdirSync("bench/results", { recursive: true });
    writeFileSync("bench/results/format.json", JSON.stringify({ date: new Date().toISOString(), passThrough: pt, lz4: { ours, oursAsync, python: py } }, null, 2));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
