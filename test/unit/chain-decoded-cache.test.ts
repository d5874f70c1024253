import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { ChainBackend } from "../../src/chain/chain-backend.js";
import { cacheDirectory, DecodedCache } from "../../src/chain/decoded-cache.js";
import { loadChain, type MappedChain } from "../../src/chain/chain-loader.js";
import { chainSpecs, writeChain } from "../helpers/map-model.js";
import { tempDir } from "../helpers/tmp.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK = 64 * KiB;

function bytes(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed * 7 + (i >> 12)) & 0xff;
  return b;
}

async function storeNow(cache: DecodedCache, piece: number, data: Buffer): Promise<void> {
  assert.ok(cache.claim(piece, data.length), `piece ${piece} claimed`);
  await cache.store(piece, data);
}

function readBack(cache: DecodedCache, piece: number, rel: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  cache.readSync(piece, rel, out);
  return out;
}

test("decoded cache: bytes come back as stored, across chunk boundaries, sync and async", async (t) => {
  const cache = await DecodedCache.create({ maxBytes: 8 * CHUNK, chunkBytes: CHUNK, dir: await tempDir(t) });
  t.after(() => cache.close());
  const a = bytes(3 * CHUNK + 100, 1);
  await storeNow(cache, 7, a);
  assert.ok(cache.has(7, 0, a.length));
  assert.ok(!cache.has(7, 0, 4 * CHUNK + 1), "past the last stored chunk");
  assert.ok(!cache.has(8, 0, 1));
  assert.ok(readBack(cache, 7, CHUNK - 10, 4096).equals(a.subarray(CHUNK - 10, CHUNK - 10 + 4096)));
  assert.ok(readBack(cache, 7, 3 * CHUNK, 100).equals(a.subarray(3 * CHUNK)));
  const viaPool = Buffer.alloc(2 * CHUNK);
  assert.equal(await cache.read(7, 50, viaPool), true);
  assert.ok(viaPool.equals(a.subarray(50, 50 + 2 * CHUNK)));
  assert.equal(await cache.read(8, 0, Buffer.alloc(10)), false, "absent piece: nothing read");
  assert.equal(cache.claim(7, a.length), false, "a stored piece is not stored again");
});

test("decoded cache: the scratch file never outgrows maxBytes; unread chunks are evicted before read ones", async (t) => {
  const cache = await DecodedCache.create({ maxBytes: 4 * CHUNK, chunkBytes: CHUNK, dir: await tempDir(t) });
  t.after(() => cache.close());
  const p0 = bytes(2 * CHUNK, 0);
  const p1 = bytes(2 * CHUNK, 1);
  await storeNow(cache, 0, p0);
  await storeNow(cache, 1, p1);
  assert.equal(cache.storedChunks, 4);
  readBack(cache, 0, 0, 10); // p0's first chunk is read: referenced
  readBack(cache, 1, CHUNK, 10); // p1's second chunk too
  await storeNow(cache, 2, bytes(2 * CHUNK, 2));
  assert.equal(cache.evictions, 2);
  assert.equal(cache.storedChunks, 4);
  assert.ok(cache.has(0, 0, CHUNK) && cache.has(1, CHUNK, CHUNK), "read chunks kept");
  assert.ok(!cache.has(0, CHUNK, 1) && !cache.has(1, 0, 1), "unread chunks evicted");
  assert.ok(readBack(cache, 0, 0, CHUNK).equals(p0.subarray(0, CHUNK)), "a kept chunk is not overwritten");
  for (let p = 3; p < 40; p++) await storeNow(cache, p, bytes(CHUNK + p, p));
  assert.ok(cache.storedChunks <= 4);
  const { size, allocated } = cache.fileBytes();
  assert.ok(size <= cache.maxBytes, `file size ${size} <= ${cache.maxBytes}`);
  assert.ok(allocated <= cache.maxBytes + 64 * KiB, `allocated ${allocated}`);
  assert.ok(readBack(cache, 39, 0, CHUNK + 39).equals(bytes(CHUNK + 39, 39)));
});

test("decoded cache: slots being read are never taken; a store with every slot busy leaves the rest uncached", async (t) => {
  const cache = await DecodedCache.create({ maxBytes: 2 * CHUNK, chunkBytes: CHUNK, dir: await tempDir(t) });
  t.after(() => cache.close());
  const p0 = bytes(2 * CHUNK, 5);
  await storeNow(cache, 0, p0);
  const out = Buffer.alloc(2 * CHUNK);
  const reading = cache.read(0, 0, out); // pins both slots until it ends
  await storeNow(cache, 1, bytes(CHUNK, 6));
  assert.equal(await reading, true);
  assert.ok(out.equals(p0), "the pinned slots kept their bytes");
  assert.ok(!cache.has(1, 0, 1), "nothing was free for piece 1");
  await storeNow(cache, 1, bytes(CHUNK, 6));
  assert.ok(cache.has(1, 0, CHUNK));
});

test("decoded cache: nothing is left in the directory, and close frees the file", async (t) => {
  const dir = await tempDir(t);
  const cache = await DecodedCache.create({ maxBytes: 4 * CHUNK, chunkBytes: CHUNK, dir });
  assert.deepEqual(await readdir(dir), [], "scratch file and its directory unlinked at once");
  await storeNow(cache, 0, bytes(CHUNK, 1));
  const storing = (() => {
    assert.ok(cache.claim(1, CHUNK));
    return cache.store(1, bytes(CHUNK, 2));
  })();
  await cache.close(); // waits for the store on the pool
  await storing;
  assert.throws(() => cache.fileBytes(), /EBADF/);
  assert.equal(cache.has(0, 0, 1), false);
  assert.equal(cache.claim(2, 10), false, "a closed cache stores nothing");
  await cache.close();
  assert.equal(cacheDirectory({ XDG_CACHE_HOME: "/home/u/.cache" }), "/home/u/.cache");
  assert.equal(cacheDirectory({ XDG_CACHE_HOME: "relative" }), "/var/tmp");
  assert.equal(cacheDirectory({}), "/var/tmp");
});

// ---------------------------------------------------------------- through ChainBackend

async function chainPair(t: { after: (fn: () => Promise<void>) => void }): Promise<{ plain: MappedChain; lz4: MappedChain }> {
  const dir = await tempDir(t);
  const specs = chainSpecs(4 * MiB);
  const plainDir = await tempDir(t);
  const plain = await loadChain(await writeChain(plainDir, specs));
  const lz4 = await loadChain(await writeChain(dir, specs, { compressLevel: 2, chunkSize: 128 * KiB }));
  t.after(() => plain.close());
  t.after(() => lz4.close());
  return { plain, lz4 };
}

test("chain with a decoded cache: random reads equal the plain chain's, also while the cache evicts", async (t) => {
  const { plain, lz4 } = await chainPair(t);
  const cache = await DecodedCache.create({ maxBytes: 6 * 32 * KiB, chunkBytes: 32 * KiB, dir: await tempDir(t) });
  t.after(() => cache.close());
  const reference = new ChainBackend(plain.index, plain.sources);
  const backend = new ChainBackend(lz4.index, lz4.sources, { decodedCache: cache, cacheBytes: 256 * KiB });
  let seed = 99;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const want = Buffer.alloc(300 * KiB);
  const got = Buffer.alloc(300 * KiB);
  for (let round = 0; round < 400; round++) {
    const length = [4096, 512, 70 * KiB, 300 * KiB][rnd(4)]!;
    const offset = Math.min(rnd(4 * MiB), 4 * MiB - length);
    await reference.read(offset, length, want.subarray(0, length));
    const many = round % 3 === 0; // several at once take the asynchronous path
    if (many) await Promise.all([backend.read(offset, length, got.subarray(0, length)), backend.read(0, 4096, Buffer.alloc(4096))]);
    else await backend.read(offset, length, got.subarray(0, length));
    assert.ok(got.subarray(0, length).equals(want.subarray(0, length)), `round ${round}: ${length} bytes at ${offset}`);
    if (round % 50 === 0) await cache.storesDone();
  }
  await cache.storesDone();
  assert.ok(cache.hits > 100, `reads served from the cache: ${cache.hits}`);
  assert.ok(cache.evictions > 0, "the small cache evicted");
  assert.ok(cache.storedChunks <= cache.slots);
});

test("chain with a decoded cache: concurrent first reads of one piece decode it once and store it once", async (t) => {
  const { lz4 } = await chainPair(t);
  const cache = await DecodedCache.create({ maxBytes: 64 * MiB, dir: await tempDir(t) });
  t.after(() => cache.close());
  const backend = new ChainBackend(lz4.index, lz4.sources, { decodedCache: cache });
  const piece = lz4.index.rangePieces[lz4.index.find(MiB + 4096)]!;
  const outs = Array.from({ length: 8 }, () => Buffer.alloc(4096));
  // Two reads in flight from the start, so none is served synchronously.
  await Promise.all(outs.map((b, i) => backend.read(MiB + 4096 * (i + 1), 4096, b)));
  await cache.storesDone();
  assert.equal(backend.pieceCache.misses, 1, "one decode");
  assert.equal(cache.stores, 1, "one store");
  assert.ok(cache.has(piece, 0, lz4.index.pieceLength[piece]!));
  const again = Buffer.alloc(4096);
  const before = cache.hits;
  const r = backend.read(MiB + 4096, 4096, again);
  assert.equal(r, undefined, "a cached piece alone is read synchronously");
  assert.equal(cache.hits, before + 1);
  assert.ok(again.equals(outs[0]!));
  assert.equal(backend.pieceCache.misses, 1, "no second decode");
});
