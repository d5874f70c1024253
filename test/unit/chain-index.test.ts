import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ChainIndexBuilder, HOLE, Layer, type ChainIndex } from "../../src/chain/chain-index.js";
import { ChainBackend, PieceCache } from "../../src/chain/chain-backend.js";
import { ChainLoadError, loadChain } from "../../src/chain/chain-loader.js";
import { MapFileError } from "../../src/chain/chain-files.js";
import { STATE_HOLE, STATE_ZERO } from "../../src/nbd/protocol.js";
import { buildStream, pattern } from "../helpers/streams.js";
import { tempDir } from "../helpers/tmp.js";
import { chainSpecs, fullExtents, modelDisk, writeChain, writeStoredZip, type Spec } from "../helpers/map-model.js";

// ---------------------------------------------------------------- index rules on synthetic layers

/** Byte-level model: piece number per byte (HOLE for holes). */
function modelPieces(layers: { size: number; full: boolean; frames: [number, number, number][] }[]): Int32Array {
  let m = new Int32Array(0);
  for (const l of layers) {
    const next = new Int32Array(l.size).fill(HOLE);
    if (!l.full) next.set(m.subarray(0, Math.min(m.length, l.size)));
    for (const [s, len, p] of l.frames) for (let b = s; b < Math.min(s + len, l.size); b++) next[b] = p;
    m = next;
  }
  return m;
}

function indexPieces(ix: ChainIndex): Int32Array {
  const out = new Int32Array(ix.size);
  for (let i = 0; i < ix.rangeCount; i++) out.fill(ix.rangePieces[i]!, ix.rangeStarts[i]!, ix.rangeEnd(i));
  return out;
}

function build(layers: { size: number; full: boolean; frames: [number, number, number][] }[]): ChainIndex {
  const b = new ChainIndexBuilder();
  for (const l of layers) {
    const layer = new Layer(l.size, l.full);
    for (const [s, len, p] of l.frames) {
      const piece = p === HOLE ? HOLE : b.addPiece({ file: 0, diskStart: s, length: len, pos: 0, csize: -1 });
      assert.equal(piece, p);
      layer.add(s, len, piece);
    }
    b.apply(layer);
  }
  return b.finish();
}

test("index: an inc overrides only where it has data frames; a full's zero frames are holes", () => {
  const ix = build([
    { size: 100, full: true, frames: [[0, 10, 0], [10, 40, HOLE], [50, 50, 1]] },
    { size: 100, full: false, frames: [[5, 10, 2], [60, 5, 3]] },
  ]);
  assert.deepEqual(
    ix.segments(0, 100).map((s) => [s.start, s.length, s.piece]),
    [[0, 5, 0], [5, 10, 2], [15, 35, HOLE], [50, 10, 1], [60, 5, 3], [65, 35, 1]],
  );
  assert.equal(ix.dataBytes(), 65);
});

test("index: a full-style stream later in the chain (inc fallen back to full) replaces everything, holes included", () => {
  const ix = build([
    { size: 100, full: true, frames: [[0, 100, 0]] },
    { size: 100, full: false, frames: [[10, 10, 1]] },
    { size: 100, full: true, frames: [[0, 30, HOLE], [30, 10, 2], [40, 60, HOLE]] },
  ]);
  assert.deepEqual(ix.segments(0, 100).map((s) => [s.start, s.length, s.piece]), [[0, 30, HOLE], [30, 10, 2], [40, 60, HOLE]]);
});

test("index: lookup by binary search, segments clipped to the request, neighbours of one hole merged", () => {
  const ix = build([{ size: 64, full: true, frames: [[0, 8, HOLE], [8, 8, HOLE], [16, 16, 0], [32, 32, 1]] }]);
  assert.equal(ix.rangeCount, 3);
  assert.equal(ix.find(0), 0);
  assert.equal(ix.find(15), 0);
  assert.equal(ix.find(16), 1);
  assert.equal(ix.find(63), 2);
  assert.deepEqual(ix.segments(20, 20).map((s) => [s.start, s.length, s.piece]), [[20, 12, 0], [32, 8, 1]]);
  assert.deepEqual(ix.segments(60, 100), [{ start: 60, length: 4, piece: 1 }]);
});

test("index: the disk size follows the last file (grown disks read holes, shrunk disks are cut)", () => {
  const grown = build([
    { size: 50, full: true, frames: [[0, 50, 0]] },
    { size: 100, full: false, frames: [[80, 10, 1]] },
  ]);
  assert.equal(grown.size, 100);
  assert.deepEqual(grown.segments(0, 100).map((s) => [s.start, s.length, s.piece]), [[0, 50, 0], [50, 30, HOLE], [80, 10, 1], [90, 10, HOLE]]);
  const shrunk = build([
    { size: 100, full: true, frames: [[0, 100, 0]] },
    { size: 40, full: false, frames: [[30, 20, 1]] },
  ]);
  assert.equal(shrunk.size, 40);
  assert.deepEqual(shrunk.segments(0, 100).map((s) => [s.start, s.length, s.piece]), [[0, 30, 0], [30, 10, 1]]);
});

test("index: random chains agree with a byte-level model", () => {
  let seed = 12345;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  for (let round = 0; round < 300; round++) {
    const layers: { size: number; full: boolean; frames: [number, number, number][] }[] = [];
    let piece = 0;
    const nLayers = 1 + rnd(6);
    let size = 1 + rnd(400);
    for (let l = 0; l < nLayers; l++) {
      if (rnd(5) === 0) size = 1 + rnd(400);
      const full = l === 0 || rnd(6) === 0;
      const frames: [number, number, number][] = [];
      let pos = 0;
      while (pos < size) {
        const gap = full ? 0 : rnd(40);
        const start = pos + gap;
        if (start >= size) break;
        const len = 1 + rnd(Math.min(60, size - start));
        const hole = full ? rnd(3) === 0 : false;
        frames.push([start, len, hole ? HOLE : piece++]);
        pos = start + len;
      }
      layers.push({ size, full, frames });
    }
    const ix = build(layers);
    assert.deepEqual(indexPieces(ix), modelPieces(layers), `round ${round}`);
    for (let i = 1; i < ix.rangeCount; i++) assert.notEqual(ix.rangePieces[i], ix.rangePieces[i - 1], "neighbours merged");
  }
});

// ---------------------------------------------------------------- chains of real stream files

const MiB = 1024 * 1024;
const KiB = 1024;

/** Reads the whole export in `step` pieces: all at once (async path), or one by one (small reads alone take the synchronous path). */
async function readAll(backend: ChainBackend, step: number, oneByOne = false): Promise<Buffer> {
  const out = Buffer.alloc(backend.size, 0xee);
  const jobs: Promise<void>[] = [];
  for (let off = 0; off < backend.size; off += step) {
    const n = Math.min(step, backend.size - off);
    const job = Promise.resolve(backend.read(off, n, out.subarray(off, off + n)));
    if (oneByOne) await job;
    else jobs.push(job);
  }
  await Promise.all(jobs);
  return out;
}

for (const variant of [
  { label: "uncompressed", opts: {} },
  { label: "lz4-compressed", opts: { compressLevel: 2 } },
  { label: "lz4-compressed, extents split into several lz4 frames", opts: { compressLevel: 2, chunkSize: 64 * KiB } },
]) {
  test(`chain (${variant.label}): every point in time reads like the model, at odd request sizes`, async (t) => {
    const dir = await tempDir(t);
    const size = 4 * MiB;
    const specs = chainSpecs(size);
    const paths = await writeChain(dir, specs, variant.opts);
    for (let upTo = 1; upTo <= specs.length; upTo++) {
      const chain = await loadChain(paths.slice(0, upTo));
      try {
        const backend = new ChainBackend(chain.index, chain.sources, { cacheBytes: 256 * KiB });
        const expected = modelDisk(specs.slice(0, upTo).map((s) => ({ size: s.size, full: s.full, extents: s.extents })));
        assert.equal(backend.size, size);
        for (const step of [4096, 65536 + 512, 1000003]) {
          assert.ok((await readAll(backend, step)).equals(expected), `point ${upTo}, request size ${step}`);
          assert.ok((await readAll(backend, step, true)).equals(expected), `point ${upTo}, request size ${step}, one by one`);
        }
        if (variant.opts.chunkSize) {
          assert.ok(chain.index.pieceCount > 10, "chunked extents became several pieces");
          assert.ok(backend.pieceCache.prefetches > 0, "sequential reads decode the next lz4 frame ahead");
        }
      } finally {
        await chain.close();
      }
    }
  });
}

test("chain: block status reports the full's holes as hole|zero and inc data as data", async (t) => {
  const dir = await tempDir(t);
  const specs = chainSpecs(4 * MiB);
  const chain = await loadChain(await writeChain(dir, specs));
  t.after(() => chain.close());
  const backend = new ChainBackend(chain.index, chain.sources);
  const HZ = STATE_HOLE | STATE_ZERO;
  assert.deepEqual(backend.blockStatus(0, 4 * MiB), [
    { length: 256 * KiB, flags: 0 },
    { length: 768 * KiB, flags: HZ },
    { length: 600 * KiB, flags: 0 }, // the full's 512K+100 at 1M, extended by the inc's 400K at 1M+200K
    { length: 2 * MiB - (MiB + 600 * KiB), flags: HZ },
    { length: 4096, flags: 0 },
    { length: MiB - 4096, flags: HZ },
    { length: 300 * KiB, flags: 0 },
    { length: MiB - 300 * KiB, flags: HZ },
  ]);
  assert.deepEqual(new ChainBackend(chain.index, chain.sources, { maxExtents: 2 }).blockStatus(0, 4 * MiB).length, 2);
});

test("chain: streams inside zip archives (one per run, or archive:entry) read in place", async (t) => {
  const dir = await tempDir(t);
  const specs = chainSpecs(4 * MiB);
  const streams = await Promise.all(
    specs.map((s) =>
      buildStream(s.extents, {
        virtualSize: s.size,
        compressLevel: 2,
        meta: { incremental: !s.full, checkpointName: s.checkpoint, parentCheckpoint: s.parent },
      }),
    ),
  );
  const full = join(dir, "full.zip");
  await writeStoredZip(full, [
    { name: specs[0]!.name, data: streams[0]! },
    { name: "vmconfig.virtnbdbackup.0.xml", data: Buffer.from("<domain/>") },
  ]);
  const inc1 = join(dir, "inc1.zip");
  await writeStoredZip(inc1, [{ name: specs[1]!.name, data: streams[1]! }]);
  const both = join(dir, "two-disks.zip");
  await writeStoredZip(both, [
    { name: "sdb.full.data", data: streams[0]! },
    { name: specs[2]!.name, data: streams[2]! },
  ]);
  const chain = await loadChain([full, inc1, `${both}:${specs[2]!.name}`]);
  t.after(() => chain.close());
  const backend = new ChainBackend(chain.index, chain.sources);
  assert.ok((await readAll(backend, 65536)).equals(modelDisk(specs.map((s) => ({ size: s.size, full: s.full, extents: s.extents })))));
  await assert.rejects(loadChain([both]), (e: Error) => e instanceof MapFileError && /several data files.*sdb\.full\.data/.test(e.message));
  await assert.rejects(loadChain([join(dir, "missing.data")]), (e: Error) => e instanceof MapFileError && /No such file/.test(e.message));
});

test("chain order: misordered, gapped, foreign-disk and inc-first lists are refused", async (t) => {
  const dir = await tempDir(t);
  const [full, inc1, inc2] = await writeChain(dir, chainSpecs(4 * MiB));
  const refused = async (files: string[], re: RegExp) =>
    assert.rejects(loadChain(files), (e: Error) => e instanceof ChainLoadError && re.test(e.message), files.join(","));
  await refused([full!, inc2!, inc1!], /not given in chain order.*sda\.full\.data,.*inc\.virtnbdbackup\.1\.data,.*inc\.virtnbdbackup\.2\.data/);
  await refused([full!, inc2!], /needs checkpoint \[virtnbdbackup\.1\]/);
  await refused([inc1!, inc2!], /Sequence must start with a full backup/);
  await refused([full!, inc1!, inc1!], /given twice/);
  const other = join(dir, "vda.inc.virtnbdbackup.1.data");
  await writeFile(
    other,
    await buildStream([], { virtualSize: 4 * MiB, meta: { diskName: "vda", incremental: true, checkpointName: "virtnbdbackup.1", parentCheckpoint: "virtnbdbackup.0" } }),
  );
  await refused([full!, other], /backup of disk \[vda\]/);
  // renamed files are ordered by their metadata
  const renamed = join(dir, "b.data");
  await writeFile(renamed, await buildStream([], { virtualSize: 4 * MiB, meta: { incremental: true, checkpointName: "virtnbdbackup.1", parentCheckpoint: "virtnbdbackup.0" } }));
  const ok = await loadChain([full!, renamed]);
  await ok.close();
});

test("chain: diffs after their parent, and an inc that fell back to full replaces everything, holes included", async (t) => {
  const dir = await tempDir(t);
  const size = 4 * MiB;
  const [full, inc1] = await writeChain(dir, chainSpecs(size).slice(0, 2));
  const diffExt = [{ start: 2 * MiB, data: pattern(8192, 9) }];
  const diff = join(dir, "sda.diff.1767400000.data");
  await writeFile(diff, await buildStream(diffExt, { virtualSize: size, meta: { incremental: true, checkpointName: "virtnbdbackup.2", parentCheckpoint: "virtnbdbackup.1" } }));
  const chain = await loadChain([full!, inc1!, diff]);
  t.after(() => chain.close());
  const specs = chainSpecs(size).slice(0, 2);
  const expected = modelDisk([...specs.map((s) => ({ size: s.size, full: s.full, extents: s.extents })), { size, full: false, extents: diffExt }]);
  assert.ok((await readAll(new ChainBackend(chain.index, chain.sources), 65536)).equals(expected));
  await assert.rejects(loadChain([full!, diff, inc1!]), /not given in chain order/);

  // sda.inc.virtnbdbackup.2.data written as a full (incremental: false): zero frames become holes again
  const fallbackExt = fullExtents(size, [{ start: MiB, data: pattern(4096, 10) }]);
  const fallback = join(dir, "sda.inc.virtnbdbackup.2.data");
  await writeFile(fallback, await buildStream(fallbackExt, { virtualSize: size, meta: { checkpointName: "virtnbdbackup.2" } }));
  const c2 = await loadChain([full!, inc1!, fallback]);
  t.after(() => c2.close());
  const got = await readAll(new ChainBackend(c2.index, c2.sources), 65536);
  assert.ok(got.equals(modelDisk([{ size, full: true, extents: fallbackExt }])));
  assert.equal(c2.index.dataBytes(), 4096);
});

test("piece cache: LRU by bytes, concurrent users share one decode, failed decodes are not kept", async () => {
  let decodes = 0;
  const cache = new PieceCache(300, async (p) => {
    decodes++;
    if (p === 99) throw new Error("bad frame");
    return Buffer.alloc(100, p);
  });
  const get = async (p: number) => {
    const lease = cache.use(p, 100);
    try {
      return await lease.data;
    } finally {
      lease.release();
    }
  };
  const [a, b] = await Promise.all([get(1), get(1)]);
  assert.equal(decodes, 1);
  assert.equal(a, b);
  await get(2);
  await get(3);
  await get(1); // hit: 1 becomes the newest
  await get(4); // evicts 2 (least recently used)
  assert.equal(decodes, 4);
  await get(1);
  assert.equal(decodes, 4);
  await get(2);
  assert.equal(decodes, 5);
  await assert.rejects(get(99), /bad frame/);
  await assert.rejects(get(99), /bad frame/);
  assert.equal(decodes, 7);
  assert.ok(cache.size <= 3);
});

test("piece cache: an evicted buffer is reused only once no read holds it, and only once", async () => {
  const recycled: number[] = [];
  const cache = new PieceCache(200, async (p) => {
    if (p === 9) throw new Error("bad frame");
    return Buffer.alloc(10, p);
  }, (buf) => recycled.push(buf[0]!));
  const held = cache.use(1, 100);
  await held.data;
  const other = cache.use(2, 100);
  await other.data;
  other.release();
  cache.use(3, 100).release(); // evicts 1, still held: not reused yet
  await new Promise((r) => setImmediate(r));
  assert.equal(recycled.length, 0);
  held.release();
  held.release(); // a second release changes nothing
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(recycled, [1]);
  cache.use(4, 100).release(); // evicts 2, unused: reused at once
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(recycled, [1, 2]);
  const bad = cache.use(9, 100);
  await assert.rejects(bad.data, /bad frame/);
  bad.release();
  cache.use(5, 100).release();
  cache.use(6, 100).release();
  await new Promise((r) => setImmediate(r));
  assert.ok(recycled.every((p) => p !== 9), "a failed decode has nothing to reuse");
});

// ---------------------------------------------------------------- bounded memory (restore)

/** The compressed pieces a front-to-back reader meets (each should be decoded once). */
function visibleLz4Pieces(ix: ChainIndex): number {
  const seen = new Set<number>();
  for (let i = 0; i < ix.rangeCount; i++) {
    const p = ix.rangePieces[i]!;
    if (p !== HOLE && ix.pieceCsize[p]! >= 0) seen.add(p);
  }
  return seen.size;
}

test("chain, boundedDecode: decoded pieces within the largest piece plus the spare, one input buffer; every read completes", async (t) => {
  const dir = await tempDir(t);
  const size = 4 * MiB;
  const specs = chainSpecs(size);
  const chain = await loadChain(await writeChain(dir, specs, { compressLevel: 2, chunkSize: 64 * KiB }));
  t.after(() => chain.close());
  const expected = modelDisk(specs.map((s) => ({ size: s.size, full: s.full, extents: s.extents })));
  for (const spare of [0, 64 * KiB]) {
    // All at once, reads spanning several pieces: every read completes (no deadlock on the budget).
    const all = new ChainBackend(chain.index, chain.sources, { boundedDecode: { spare } });
    assert.ok((await readAll(all, 1000003)).equals(expected), `spare ${spare}, concurrent reads`);
    assert.equal(all.inputsAllocated, 1, "decodes take turns with one input buffer");
    assert.deepEqual(all.decodeBuffers.map((p) => p.budget), [64 * KiB], "one buffer of the largest piece's class (no smaller pieces: no spare buffer)");
    const seq = new ChainBackend(chain.index, chain.sources, { boundedDecode: { spare } });
    assert.ok((await readAll(seq, 65536 + 512, true)).equals(expected), `spare ${spare}, one by one`);
    assert.equal(seq.pieceCache.prefetches, 0, "nothing decoded ahead (it could push out a piece still to be read)");
    assert.equal(seq.inputsAllocated, 1);
  }
});

test("chain, boundedDecode: with a spare, an inc's small pieces inside a full's piece leave it cached: front to back decodes each piece once", async (t) => {
  const dir = await tempDir(t);
  const size = 4 * MiB;
  // A full of 1 MiB in 256 KiB lz4 pieces; an inc with 4 KiB changes inside each of them.
  const specs: Spec[] = [
    { name: "sda.full.data", size, full: true, extents: fullExtents(size, [{ start: MiB, data: pattern(MiB, 1) }]), checkpoint: "virtnbdbackup.0", parent: "" },
    {
      name: "sda.inc.virtnbdbackup.1.data",
      size,
      full: false,
      extents: [0, 1, 2, 3].map((k) => ({ start: MiB + k * 256 * KiB + 100 * KiB, data: pattern(4096, 10 + k) })),
      checkpoint: "virtnbdbackup.1",
      parent: "virtnbdbackup.0",
    },
  ];
  const chain = await loadChain(await writeChain(dir, specs, { compressLevel: 2, chunkSize: 256 * KiB }));
  t.after(() => chain.close());
  const expected = modelDisk(specs.map((s) => ({ size: s.size, full: s.full, extents: s.extents })));
  const pieces = visibleLz4Pieces(chain.index);
  assert.equal(pieces, 8);
  const decodes = async (spare: number) => {
    const backend = new ChainBackend(chain.index, chain.sources, { boundedDecode: { spare } });
    assert.ok((await readAll(backend, 32 * KiB, true)).equals(expected), `spare ${spare}`);
    assert.deepEqual(backend.decodeBuffers.map((p) => p.budget), spare ? [256 * KiB, spare] : [256 * KiB], "one buffer for the largest pieces, one of the spare's size");
    assert.equal(backend.decodeBuffers[0]!.allocated, 1, "one buffer for the full's pieces, reused");
    if (spare) assert.equal(backend.decodeBuffers[1]!.allocated, 1, "one for the inc's");
    return backend.pieceCache.misses;
  };
  assert.equal(await decodes(64 * KiB), pieces, "each piece decoded once");
  assert.ok((await decodes(0)) > pieces, "no spare: a full's piece is decoded again after each inc piece inside it");
});

test("chain, boundedDecode: many reads at once in any order over pieces of mixed sizes all complete (pieces decoded while a decode waits are given up for it)", async (t) => {
  const dir = await tempDir(t);
  const size = 4 * MiB;
  const specs: Spec[] = [
    { name: "sda.full.data", size, full: true, extents: fullExtents(size, [{ start: MiB, data: pattern(MiB, 1) }]), checkpoint: "virtnbdbackup.0", parent: "" },
    {
      name: "sda.inc.virtnbdbackup.1.data",
      size,
      full: false,
      // Pieces of the spare's size and smaller, inside the full's pieces and beside them.
      extents: Array.from({ length: 12 }, (_, k) => ({ start: MiB / 2 + k * 200 * KiB, data: pattern(k % 3 === 0 ? 128 * KiB : 20 * KiB, 20 + k) })),
      checkpoint: "virtnbdbackup.1",
      parent: "virtnbdbackup.0",
    },
  ];
  const chain = await loadChain(await writeChain(dir, specs, { compressLevel: 2, chunkSize: 256 * KiB }));
  t.after(() => chain.close());
  const expected = modelDisk(specs.map((s) => ({ size: s.size, full: s.full, extents: s.extents })));
  let seed = 7;
  const random = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  for (let round = 0; round < 5; round++) {
    const backend = new ChainBackend(chain.index, chain.sources, { boundedDecode: { spare: 128 * KiB } });
    const out = Buffer.alloc(size, 0xee);
    const offsets = Array.from({ length: size / (48 * KiB) + 1 }, (_, i) => i * 48 * KiB).filter((o) => o < size);
    offsets.sort(() => random() - 0.5);
    const reads = offsets.map(async (off) => {
      const n = Math.min(48 * KiB, size - off);
      const view = backend.readView(off, n);
      if (view) {
        const v = await view;
        await new Promise((r) => setTimeout(r, random() * 3)); // held while "sent"
        v.data.copy(out, off);
        v.release();
      } else await backend.read(off, n, out.subarray(off, off + n));
    });
    let timer: NodeJS.Timeout | undefined;
    const stuck = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`round ${round}: reads stuck`)), 10000)));
    await Promise.race([Promise.all(reads), stuck]);
    clearTimeout(timer);
    assert.ok(out.equals(expected), `round ${round}`);
  }
});

test("chain, readView: a read inside one lz4 piece is lent from the decoded piece, held until released; others read into buffers", async (t) => {
  const dir = await tempDir(t);
  const size = 4 * MiB;
  const specs = chainSpecs(size, { aligned: true });
  const chain = await loadChain(await writeChain(dir, specs, { compressLevel: 2, chunkSize: 64 * KiB }));
  t.after(() => chain.close());
  const expected = modelDisk(specs.map((s) => ({ size: s.size, full: s.full, extents: s.extents })));
  const ix = chain.index;
  const backend = new ChainBackend(ix, chain.sources, { boundedDecode: { spare: 0 } });
  const pieceAt = (offset: number) => ix.rangePieces[ix.find(offset)]!;
  const a = pieceAt(MiB); // the full's second extent, first 64 KiB piece
  const b = pieceAt(MiB + 64 * KiB);
  assert.ok(a >= 0 && b >= 0 && a !== b && ix.pieceCsize[a]! >= 0);
  const v1 = await backend.readView(MiB + 100, 4096)!;
  assert.ok(v1.data.equals(expected.subarray(MiB + 100, MiB + 100 + 4096)));
  const v2 = await backend.readView(MiB, 8)!;
  assert.equal(v2.data.buffer, v1.data.buffer, "the same decoded piece, no copy");
  // Room for one piece: the next waits until every view of this one is released.
  const next = backend.readView(MiB + 64 * KiB, 4096)!;
  let settled = false;
  void next.then(() => (settled = true));
  await new Promise((r) => setImmediate(r));
  assert.equal(settled, false, "the piece is still lent out");
  v1.release();
  v2.release();
  const v3 = await next;
  assert.ok(v3.data.equals(expected.subarray(MiB + 64 * KiB, MiB + 64 * KiB + 4096)));
  v3.release();
  assert.equal(backend.decodeBuffers[0]!.allocated, 1, "one buffer, reused");
  assert.equal(backend.readView(MiB + 64 * KiB - 10, 20), null, "across two pieces");
  assert.equal(backend.readView(2 * MiB - 4096, 4096), null, "a hole");
  assert.equal(backend.readView(size - 4096, 8192), null, "past the end");
});
