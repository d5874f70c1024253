import { test } from "node:test";
import assert from "node:assert/strict";
import { StreamReader } from "../../src/format/reader.js";
import { StreamFormatError } from "../../src/format/errors.js";
import { BufferPool } from "../../src/util/buffer-pool.js";
import { MemorySource } from "../helpers/memory-streams.js";
import { buildStream, pattern } from "../helpers/streams.js";

/** Deterministic PRNG so a failure can be replayed from its iteration number. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
}

async function consume(bytes: Buffer, pool: BufferPool): Promise<void> {
  const reader = await StreamReader.open(new MemorySource(bytes));
  for await (const f of reader.frames()) {
    if (f.kind !== "data") continue;
    for await (const p of reader.pieces(f, pool)) if (p.buffer) pool.release(p.buffer);
  }
}

const HEX_CHARS = "0123456789abcdefABCDEF ffffffff\r\n";

function mutate(base: Buffer, r: () => number): Buffer {
  const b = Buffer.from(base);
  const kind = Math.floor(r() * 6);
  const pos = Math.floor(r() * b.length);
  switch (kind) {
    case 0: // flip bits
      for (let i = 0, n = 1 + Math.floor(r() * 4); i < n; i++) b[Math.floor(r() * b.length)]! ^= 1 << Math.floor(r() * 8);
      return b;
    case 1: // truncate
      return b.subarray(0, pos);
    case 2: // hex-ish digits over header fields
      for (let i = 0, n = 1 + Math.floor(r() * 16); i < n && pos + i < b.length; i++) b[pos + i] = HEX_CHARS.charCodeAt(Math.floor(r() * HEX_CHARS.length));
      return b;
    case 3: // insert garbage
      return Buffer.concat([b.subarray(0, pos), pattern(1 + Math.floor(r() * 64), pos + 1), b.subarray(pos)]);
    case 4: // delete a range
      return Buffer.concat([b.subarray(0, pos), b.subarray(Math.min(b.length, pos + 1 + Math.floor(r() * 100)))]);
    default: // random bytes entirely
      return pattern(Math.floor(r() * 400), pos + 7);
  }
}

test("100 000 mutated and random streams: only StreamFormatError, bounded memory", async () => {
  const size = 1 << 20;
  const seeds = await Promise.all(
    [undefined, 2].map((level) =>
      buildStream(
        [
          { start: 0, data: pattern(3000, 3) },
          { start: 3000, zero: 5000 },
          { start: 8000, data: Buffer.alloc(70000, 0x41) },
          { start: 78000, zero: size - 78000 },
        ],
        { virtualSize: size, compressLevel: level, chunkSize: 40000 },
      ),
    ),
  );
  const pool = BufferPool.fixed(64 * 1024, 2);
  const r = rng(12345);
  const rssBefore = process.memoryUsage().rss;
  let accepted = 0;
  for (let i = 0; i < 100_000; i++) {
    const input = mutate(seeds[i % 2]!, r);
    try {
      await consume(input, pool);
      accepted++;
    } catch (e) {
      if (!(e instanceof StreamFormatError)) assert.fail(`iteration ${i}: ${(e as Error).stack}`);
    }
    assert.equal(pool.bytesInUse, 0, `iteration ${i} leaked a pool buffer`);
  }
  const grown = process.memoryUsage().rss - rssBefore;
  assert.ok(grown < 256 * 1024 * 1024, `RSS grew by ${grown} bytes`);
  assert.ok(accepted > 0 && accepted < 100_000);
});
