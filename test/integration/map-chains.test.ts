/**
 * virtnbdmap on real backup chains: made by the Debian Python tool (1.9.15) and by ours,
 * plain, lz4-compressed and inside `-o -` zip archives. Every point in time of each chain is
 * mapped and read whole (nbdcopy, qemu-img convert) and compared with the true disk content
 * read from the running domain right after that backup.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { testDomain, MiB, type TestDomain } from "../helpers/domains.js";
import { backup, type Tool } from "../helpers/map-backups.js";
import { exportHash, fileHash, startMap } from "../helpers/map-run.js";
import { run } from "../helpers/nbd-servers.js";
import { tempDir } from "../helpers/tmp.js";

interface Point {
  files: string[];
  hash: string;
}

/** Changes between backups: patterns and random data only (sparse detection keeps old data under trimmed ranges by design). */
const changes: ((d: TestDomain, salt: number) => Promise<void>)[] = [
  async (d, salt) => {
    await d.writePattern("sda", 8 * MiB, MiB, 0x50 + salt);
    await d.writeRandom("sda", 20 * MiB + 4096, 512 * 1024, 71 + 100 * salt);
  },
  async (d, salt) => {
    await d.writePattern("sda", 0, 64 * 1024, 0x70 + salt);
    await d.writeRandom("sda", 40 * MiB, 256 * 1024, 72 + 100 * salt);
    await d.writePattern("sda", 8 * MiB + 512 * 1024, 4096, 0x30 + salt);
  },
];
let chains = 0;

/** full, then one inc per change; returns each point in time with the disk's true content hash. */
async function makeChain(
  d: TestDomain,
  tool: Tool,
  where: { dir: string; zip?: boolean; compress?: boolean },
  incs: number,
): Promise<Point[]> {
  await mkdir(where.dir, { recursive: true });
  const points: Point[] = [];
  const files: string[] = [];
  const salt = chains++;
  for (let i = 0; i <= incs; i++) {
    if (i > 0) await changes[i - 1]!(d, salt);
    const hash = await d.diskHash("sda");
    const level = i === 0 ? "full" : "inc";
    if (where.zip) {
      const zip = join(where.dir, `${level}${i}.zip`);
      await backup(tool, { domain: d.name, level, zip, cwd: where.dir, compress: where.compress });
      files.push(zip);
    } else {
      await backup(tool, { domain: d.name, level, dir: where.dir, compress: where.compress });
      const name = i === 0 ? "sda.full.data" : `sda.inc.virtnbdbackup.${i}.data`;
      assert.ok((await readdir(where.dir)).includes(name), `${name} written`);
      files.push(join(where.dir, name));
    }
    points.push({ files: [...files], hash });
  }
  assert.equal(new Set(points.map((p) => p.hash)).size, points.length, "every point in time has different content");
  return points;
}

async function checkPoints(t: Parameters<typeof startMap>[0], points: Point[], label: string): Promise<void> {
  for (const [i, p] of points.entries()) {
    const m = await startMap(t, p.files);
    try {
      assert.equal(await exportHash(m.uri), p.hash, `${label}: point ${i} (${p.files.length} file(s)) read with nbdcopy`);
    } finally {
      const { code } = await m.stop();
      assert.equal(code, 0);
    }
  }
}

test("Python tool (1.9.15) chains: plain full + 2 incs, and lz4 in zips (full + inc), bit-exact at every point", async (t) => {
  const d = await testDomain(t, { start: true });
  const dir = await tempDir(t, "vnbt-map-py-");
  const plain = await makeChain(d, "python", { dir: join(dir, "plain") }, 2);
  await checkPoints(t, plain, "python plain");
  const zipped = await makeChain(d, "python", { dir: join(dir, "zip"), zip: true, compress: true }, 1);
  await checkPoints(t, zipped, "python lz4 zip");
});

test("our chains: plain full + 2 incs (with writes into the overlay), lz4 (full + inc), zip (full + inc)", async (t) => {
  const d = await testDomain(t, { start: true });
  const dir = await tempDir(t, "vnbt-map-ours-");
  const plain = await makeChain(d, "ours", { dir: join(dir, "plain") }, 2);
  await checkPoints(t, plain, "ours plain");

  // Writes through the export land in the copy-on-write overlay: the export changes, the files do not.
  const last = plain.at(-1)!;
  const before = await Promise.all(last.files.map(fileHash));
  const m = await startMap(t, last.files);
  const raw = join(dir, "export.raw");
  await run("qemu-io", ["-f", "raw", "-c", "write -P 0x99 1M 3M", "-c", "write -P 0x98 63M 4096", m.uri]);
  const read = await run("qemu-io", ["-f", "raw", "-c", "read -P 0x99 1M 3M", "-c", "read -P 0x98 63M 4096", m.uri]);
  assert.doesNotMatch(read.stdout + read.stderr, /Pattern verification failed/);
  await run("qemu-img", ["convert", "-f", "raw", "-O", "raw", m.uri, raw]);
  assert.notEqual(await fileHash(raw), last.hash, "the export shows the writes");
  assert.deepEqual(await Promise.all(last.files.map(fileHash)), before, "data files unchanged");
  assert.equal((await m.stop()).code, 0);
  await rm(raw);
  const again = await startMap(t, last.files);
  assert.equal(await exportHash(again.uri), last.hash, "a new mapping starts without the old overlay");
  await again.stop();

  const lz4 = await makeChain(d, "ours", { dir: join(dir, "lz4"), compress: true }, 1);
  await checkPoints(t, lz4, "ours lz4");
  const zipped = await makeChain(d, "ours", { dir: join(dir, "zip"), zip: true }, 1);
  // qemu-img convert as a second reader
  for (const p of zipped) {
    const mz = await startMap(t, p.files);
    await run("qemu-img", ["convert", "-f", "raw", "-O", "raw", mz.uri, raw]);
    assert.equal(await fileHash(raw), p.hash, `ours zip: ${p.files.length} file(s) read with qemu-img convert`);
    assert.equal((await mz.stop()).code, 0);
    await rm(raw);
  }
});
