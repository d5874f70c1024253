/**
 * virtnbdbackup levels on real domains (libvirtd pull-mode jobs, qemu dirty bitmaps, qemu-nbd for
 * offline runs): data is written between backups through HMP qemu-io (qemu-io on the image while
 * shut off), the true disk content is read through NBD right after each backup, and the sets are
 * restored by the original's virtnbdrestore (Debian 1.9.15) at every point in time and compared
 * bit-exact.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { testDomain, MiB, type TestDomain } from "../helpers/domains.js";
import { assertOk, captureTruth, imageHash, ourBackup, type ToolResult } from "../helpers/our-tool.js";
import { PY_RESTORE, runPython } from "../helpers/python-tool.js";
import { tempDir } from "../helpers/tmp.js";

interface Point {
  label: string;
  /** Data files of one disk's chain up to this point, per disk. */
  files: Record<string, string[]>;
  truth: Record<string, string>;
}

async function backup(d: TestDomain, dir: string, level: string, extra: string[] = []): Promise<ToolResult> {
  return assertOk(await ourBackup(["-d", d.name, "-l", level, "-o", dir, "-n", ...extra]), `backup ${level} ${extra.join(" ")}`);
}

async function newDataFile(dir: string, before: Set<string>, disk: string): Promise<string> {
  const added = (await readdir(dir)).filter((n) => !before.has(n) && n.startsWith(`${disk}.`) && n.endsWith(".data"));
  assert.equal(added.length, 1, `one new data file for ${disk}: ${added.join(", ")}`);
  return added[0]!;
}

/** Python virtnbdrestore --sequence of one disk's files; returns the restored image's content hash. */
async function pythonSequenceHash(set: string, out: string, files: string[]): Promise<string> {
  const r = await runPython(PY_RESTORE, ["-i", set, "-o", out, "-n", "--sequence", files.join(",")]);
  assert.equal(r.exitCode, 0, String(r.all));
  assert.doesNotMatch(String(r.all), /ERROR|Traceback/, String(r.all));
  const disk = (await readdir(out)).find((n) => !n.endsWith(".xml"));
  assert.ok(disk, `restored image in ${out}`);
  return imageHash(join(out, disk), "qcow2");
}

test("1 disk: full → inc -z → diff → auto → offline inc → offline diff, each point restored bit-exact by the Python tool", async (t) => {
  const d = await testDomain(t, { start: true });
  const work = await tempDir(t, "vnbt-levels-");
  const set = join(work, "set");
  const points: Point[] = [];
  const chain: string[] = [];
  const step = async (label: string, level: string, extra: string[], keepInChain: boolean) => {
    const before = new Set(await readdir(set).catch(() => [] as string[]));
    const r = await backup(d, set, level, extra);
    const file = await newDataFile(set, before, "sda");
    const files = [...chain, file];
    if (keepInChain) chain.push(file);
    points.push({ label, files: { sda: files }, truth: await captureTruth(d) });
    return { r, file };
  };

  const full = await step("full", "full", [], true);
  assert.equal(full.file, "sda.full.data");
  assert.match(full.r.stderr, /Backup level: \[full\]/);
  assert.deepEqual(JSON.parse(await readFile(join(set, `${d.name}.cpt`), "utf8")), ["virtnbdbackup.0"]);

  await d.writePattern("sda", 8 * MiB, MiB, 0x51);
  await d.writeRandom("sda", 20 * MiB + 4096, 512 * 1024, 71);
  const inc = await step("inc -z", "inc", ["-z"], true);
  assert.equal(inc.file, "sda.inc.virtnbdbackup.1.data");
  assert.match(inc.r.stderr, /Compression enabled, level \[2\]/);

  await d.writePattern("sda", 0, 64 * 1024, 0x72);
  await d.writeRandom("sda", 40 * MiB, 256 * 1024, 72);
  const diff = await step("diff", "diff", [], false);
  assert.match(diff.file, /^sda\.diff\.\d+\.data$/);

  await d.writePattern("sda", 8 * MiB + 512 * 1024, 4096, 0x33);
  const auto = await step("auto (inc)", "auto", [], true);
  assert.match(auto.r.stderr, /Backup mode auto: executing incremental backup\./);
  assert.equal(auto.file, "sda.inc.virtnbdbackup.2.data");
  assert.deepEqual(JSON.parse(await readFile(join(set, `${d.name}.cpt`), "utf8")), ["virtnbdbackup.0", "virtnbdbackup.1", "virtnbdbackup.2"]);

  await d.destroy();
  await d.writePattern("sda", 30 * MiB, 2 * MiB, 0x44);
  const offInc = await step("offline inc", "inc", [], true);
  assert.match(offInc.file, /^sda\.inc\.virtnbdbackup\.2\.\d+\.data$/, "offline inc never replaces the online inc of that checkpoint");
  assert.match(offInc.r.stderr, /Offline backup, using latest checkpoint, saving only delta\./);

  await d.writeRandom("sda", 50 * MiB, MiB, 73);
  const offDiff = await step("offline diff", "diff", ["-z"], false);
  assert.match(offDiff.file, /^sda\.diff\.\d+\.data$/);

  assert.equal(new Set(points.map((p) => p.truth["sda"])).size, points.length, "every point has different content");
  for (const [i, p] of points.entries()) {
    const hash = await pythonSequenceHash(set, join(work, `py${i}`), p.files["sda"]!);
    assert.equal(hash, p.truth["sda"], `${p.label}: Python restore of ${p.files["sda"]!.join(",")}`);
  }
  // Normal mode (by mtime, all files) gives the latest point.
  const out = join(work, "py-all");
  const r = await runPython(PY_RESTORE, ["-i", set, "-o", out, "-n"]);
  assert.equal(r.exitCode, 0, String(r.all));
  assert.equal(await imageHash(join(out, "sda.qcow2"), "qcow2"), points.at(-1)!.truth["sda"]);
});

test("2 disks: full -z → inc → diff, restored bit-exact by the Python tool (--until at each checkpoint)", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 32 * MiB }, { size: 48 * MiB }], start: true });
  const work = await tempDir(t, "vnbt-levels2-");
  const set = join(work, "set");
  const truths: Record<string, string>[] = [];

  const full = await backup(d, set, "full", ["-z"]);
  assert.match(full.stderr, /Concurrent backup processes: \[2\]/);
  truths.push(await captureTruth(d));
  await d.writePattern("sda", 3 * MiB, MiB, 0x61);
  await d.writeRandom("sdb", 10 * MiB, 3 * MiB, 81);
  await backup(d, set, "inc");
  truths.push(await captureTruth(d));
  await d.writeRandom("sda", 16 * MiB, 2 * MiB, 82);
  await d.writePattern("sdb", 47 * MiB, 4096, 0x62);
  await backup(d, set, "diff");
  truths.push(await captureTruth(d));

  const names = await readdir(set);
  for (const disk of ["sda", "sdb"]) {
    assert.ok(names.includes(`${disk}.full.data`));
    assert.ok(names.includes(`${disk}.inc.virtnbdbackup.1.data`));
    assert.ok(names.some((n) => new RegExp(`^${disk}\\.diff\\.\\d+\\.data$`).test(n)));
    assert.ok(names.includes(`${disk}.full.data.chksum`));
  }

  const runs: [string, string[], Record<string, string>][] = [
    ["until virtnbdbackup.0", ["--until", "virtnbdbackup.0"], truths[0]!],
    ["until virtnbdbackup.1", ["--until", "virtnbdbackup.1"], truths[1]!],
    ["whole set", [], truths[2]!],
  ];
  for (const [i, [label, extra, truth]] of runs.entries()) {
    const out = join(work, `py${i}`);
    const r = await runPython(PY_RESTORE, ["-i", set, "-o", out, "-n", ...extra]);
    assert.equal(r.exitCode, 0, String(r.all));
    assert.doesNotMatch(String(r.all), /ERROR|Traceback/, String(r.all));
    assert.equal(await imageHash(join(out, "sda.qcow2"), "qcow2"), truth["sda"], `${label}: sda`);
    assert.equal(await imageHash(join(out, "sdb.qcow2"), "qcow2"), truth["sdb"], `${label}: sdb`);
  }
});
