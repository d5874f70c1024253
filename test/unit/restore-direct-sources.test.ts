/**
 * direct-sources: qemu-img convert reading uncompressed chains itself, one raw view per range.
 * Real qemu-img writes the image; its content must equal the model at every point in time.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { loadChain } from "../../src/chain/chain-loader.js";
import { CHILDREN_PER_NODE, directCommand, directPasses, MAX_RANGES, PASS_ALIGN } from "../../src/restore/direct-sources.js";
import { chainSpecs, fullExtents, modelDisk, writeChain, type Spec } from "../helpers/map-model.js";
import { pattern } from "../helpers/streams.js";
import { tempDir } from "../helpers/tmp.js";

const run = promisify(execFile);

/** The chain as the sources of one qemu-img command, or null (as with `--compress`). */
const directSources = (index: Parameters<typeof directPasses>[0], paths: readonly (string | null)[]) => directPasses(index, paths, 1)?.[0]?.sources ?? null;
const KiB = 1024;
const MiB = 1024 * KiB;

test("uncompressed chains: qemu-img convert from the raw views gives the model disk at every point in time, holes stay unallocated", async (t) => {
  const dir = await tempDir(t);
  const size = 4 * MiB;
  const chain = chainSpecs(size, { aligned: true });
  const paths = await writeChain(dir, chain);
  for (let upTo = 1; upTo <= chain.length; upTo++) {
    const loaded = await loadChain(paths.slice(0, upTo));
    try {
      const args = directSources(loaded.index, paths.slice(0, upTo));
      assert.ok(args, "an uncompressed chain of plain files is read directly");
      assertNodesShared(args);
      const image = join(dir, `out${upTo}.qcow2`);
      await run("qemu-img", ["create", "-q", "-f", "qcow2", image, String(size)]);
      await run("qemu-img", ["convert", "-n", "--target-is-zero", "-W", "-O", "qcow2", ...args, image]);
      const raw = join(dir, `out${upTo}.raw`);
      await run("qemu-img", ["convert", "-O", "raw", image, raw]);
      const expected = modelDisk(chain.slice(0, upTo).map((s) => ({ size: s.size, full: s.full, extents: s.extents })));
      assert.ok((await readFile(raw)).equals(expected), `point in time ${upTo}`);
      // The full's zero frames (2 MiB .. 3 MiB, except the inc's block) are not allocated.
      const map = JSON.parse((await run("qemu-img", ["map", "--output=json", image])).stdout) as { start: number; length: number; data: boolean }[];
      assert.ok(map.some((m) => !m.data && m.start <= 2 * MiB + 64 * KiB && m.start + m.length >= 3 * MiB), JSON.stringify(map));
    } finally {
      await loaded.close();
    }
  }
});

test("chains qemu-img cannot read as raw views are left to the NBD path (null)", async (t) => {
  const dir = await tempDir(t);
  const size = 4 * MiB;
  const plain = await writeChain(dir, chainSpecs(size, { aligned: true }));
  const loaded = await loadChain(plain);
  t.after(() => loaded.close());
  assert.equal(directSources(loaded.index, [plain[0]!, null, plain[2]!]), null, "a file without a local path (zip entry)");

  const lz4Dir = await tempDir(t);
  const lz4 = await loadChain(await writeChain(lz4Dir, chainSpecs(size, { aligned: true }), { compressLevel: 2 }));
  t.after(() => lz4.close());
  assert.equal(directSources(lz4.index, plain), null, "lz4 frames");

  const oddDir = await tempDir(t);
  const oddPaths = (await writeChain(oddDir, chainSpecs(size))).slice(0, 1); // the inc covers the odd end
  const odd = await loadChain(oddPaths);
  t.after(() => odd.close());
  assert.equal(directSources(odd.index, oddPaths), null, "a range that is not a multiple of 512 bytes");

  // Many ranges: qemu-img would hold too much memory (and the command line get too long).
  const many: Spec = {
    name: "sda.full.data",
    size: 64 * MiB,
    full: true,
    extents: fullExtents(64 * MiB, Array.from({ length: 8000 }, (_, i) => ({ start: i * 8 * KiB, data: pattern(512, i) }))),
    checkpoint: "virtnbdbackup.0",
    parent: "",
  };
  const manyDir = await tempDir(t);
  const manyPaths = await writeChain(manyDir, [many]);
  const big = await loadChain(manyPaths);
  t.after(() => big.close());
  assert.equal(directSources(big.index, manyPaths), null, "16000 ranges");
  const justOver: Spec = { ...many, extents: fullExtents(64 * MiB, Array.from({ length: MAX_RANGES / 2 + 1 }, (_, i) => ({ start: i * 8 * KiB, data: pattern(512, i) }))) };
  const overDir = await tempDir(t);
  const overPaths = await writeChain(overDir, [justOver]);
  const over = await loadChain(overPaths);
  t.after(() => over.close());
  assert.ok(over.index.rangeCount > MAX_RANGES && over.index.rangeCount < MAX_RANGES + 8);
  assert.equal(directSources(over.index, overPaths), null, `more than ${MAX_RANGES} ranges: not one qemu-img (its memory, a short command line)`);
  assert.equal(directPasses(over.index, overPaths)?.length, 2, "two passes");
});

/** Each file node is named once (by its first view) and is the file of at most CHILDREN_PER_NODE views. */
function assertNodesShared(args: string[]): void {
  const views = new Map<string, number>();
  for (const a of args) {
    const spec = JSON.parse(a.slice("json:".length)) as { driver: string; file?: string | { "node-name": string } };
    if (spec.driver !== "raw") continue;
    const node = typeof spec.file === "string" ? spec.file : spec.file!["node-name"];
    if (typeof spec.file !== "string") assert.ok(!views.has(node), `node ${node} named twice`);
    else assert.ok(views.has(node), `node ${node} used before it is named`);
    views.set(node, (views.get(node) ?? 0) + 1);
  }
  for (const [node, n] of views) assert.ok(n <= CHILDREN_PER_NODE, `node ${node} under ${n} views`);
}

/** A set of one full backup of `size` bytes holding `count` data ranges of `piece` bytes, one every `every` bytes; loaded. */
async function fragmentedFull(t: TestContext, dir: string, size: number, count: number, every: number, piece: number) {
  const spec: Spec = {
    name: "sda.full.data",
    size,
    full: true,
    extents: fullExtents(size, Array.from({ length: count }, (_, i) => ({ start: i * every, data: pattern(piece, i) }))),
    checkpoint: "virtnbdbackup.0",
    parent: "",
  };
  const paths = await writeChain(dir, [spec]);
  const loaded = await loadChain(paths);
  t.after(() => loaded.close());
  return { spec, paths, index: loaded.index };
}

/** The qcow2 `image` reads as the disk `spec` backs up. */
async function assertImageHolds(dir: string, image: string, spec: Spec): Promise<void> {
  const raw = join(dir, "out.raw");
  await run("qemu-img", ["convert", "-O", "raw", image, raw]);
  assert.ok((await readFile(raw)).equals(modelDisk([{ size: spec.size, full: true, extents: spec.extents }])));
}

test("a fragmented file is opened again every CHILDREN_PER_NODE ranges (qemu walks a node's parents per request); the image is right", async (t) => {
  const dir = await tempDir(t);
  const size = 8 * MiB;
  const { spec, paths, index } = await fragmentedFull(t, dir, size, 100, 64 * KiB, 32 * KiB);
  const args = directSources(index, paths);
  assert.ok(args);
  assertNodesShared(args);
  assert.equal(args.filter((a) => a.includes('"node-name"')).length, Math.ceil(100 / CHILDREN_PER_NODE));
  const image = join(dir, "out.qcow2");
  await run("qemu-img", ["create", "-q", "-f", "qcow2", image, String(size)]);
  await run("qemu-img", ["convert", "-n", "--target-is-zero", "-O", "qcow2", ...args, image]);
  await assertImageHolds(dir, image, spec);
});

test("a chain of more than MAX_RANGES ranges is copied in passes, each writing its part of the target through a raw view; the image is right and its clusters in offset order", async (t) => {
  const dir = await tempDir(t);
  const size = 16 * MiB;
  // 3000 data ranges of 2 KiB every 4 KiB (+ holes between): ~6000 ranges, PASS_ALIGN boundaries among them.
  const { spec, paths, index } = await fragmentedFull(t, dir, size, 3000, 4 * KiB, 2 * KiB);
  assert.equal(directSources(index, paths), null, "not one command");
  const passes = directPasses(index, paths);
  assert.ok(passes && passes.length >= 5, `${passes?.length} passes`);
  let at = 0;
  for (const p of passes) {
    assert.equal(p.offset, at, "passes cover the disk in order");
    assert.equal(p.offset % PASS_ALIGN, 0);
    assert.ok(p.sources.length <= MAX_RANGES + 2 * (PASS_ALIGN / (4 * KiB)), `${p.sources.length} sources`);
    assertNodesShared(p.sources);
    at += p.size;
  }
  assert.equal(at, size);
  const image = join(dir, "out.qcow2");
  await run("qemu-img", ["create", "-q", "-f", "qcow2", image, String(size)]);
  for (const p of passes) await run("qemu-img", directCommand(["convert", "-n", "--target-is-zero"], p, false, "qcow2", image));
  await assertImageHolds(dir, image, spec);
  // Clusters allocated in offset order: the guest's 64 KiB clusters map to increasing host offsets.
  const map = JSON.parse((await run("qemu-img", ["map", "--output=json", image])).stdout) as { start: number; data: boolean; offset?: number }[];
  const hosts = map.filter((m) => m.data).map((m) => m.offset!);
  assert.deepEqual(hosts, [...hosts].sort((a, b) => a - b));
});
