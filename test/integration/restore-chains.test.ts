/**
 * virtnbdrestore on sets made by our virtnbdbackup from real domains (libvirtd pull-mode jobs,
 * qemu dirty bitmaps, qemu-nbd offline): every level, plain and lz4, directory and zip archives,
 * restored at every checkpoint (`--until`) into new qcow2 images through qemu-nbd, and compared
 * bit-exact with the true disk content read through NBD right after each backup.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { cp, mkdir, readdir, readFile, utimes } from "node:fs/promises";
import { join } from "node:path";
import { testDomain, MiB, type TestDomain } from "../helpers/domains.js";
import { DomainXml } from "../../src/libvirt/domain-xml.js";
import { assertOk, captureTruth, imageHash, ourBackup, ourRestore, sh } from "../helpers/our-tool.js";
import { tempDir } from "../helpers/tmp.js";

/** Restores `input` into a new directory and checks every disk against `truth`. */
/** The NBD-writes engine (qemu-nbd; used for remote restores) instead of the local qemu-img convert. */
const NBD_WRITES = { env: { ...process.env, VIRTNBD_RESTORE_ENGINE: "nbd-writes" } };
const CONVERT_NBD = { env: { ...process.env, VIRTNBD_RESTORE_ENGINE: "convert-nbd" } };

async function restoreAndCompare(
  input: string,
  out: string,
  extra: string[],
  truth: Record<string, string>,
  label: string,
  o: { env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  const r = assertOk(await ourRestore(["-i", input, "-o", out, "-n", ...extra], o), `restore ${label}`);
  assert.doesNotMatch(r.stderr, /ERROR/, r.stderr);
  const names = await readdir(out);
  assert.ok(!names.some((n) => n.endsWith(".partial")), `${label}: no partial image left: ${names.join(" ")}`);
  for (const [disk, hash] of Object.entries(truth)) {
    assert.equal(await imageHash(join(out, `${disk}.qcow2`), "qcow2"), hash, `${label}: ${disk}`);
  }
  return r.stderr;
}

async function change(d: TestDomain, salt: number): Promise<void> {
  for (const [i, disk] of d.disks.entries()) {
    await d.writeRandom(disk.target, ((salt * 3 + i) % 7) * 4 * MiB + 4096 * salt, 768 * 1024, 300 + salt * 10 + i);
    await d.writePattern(disk.target, (20 + salt) * MiB, 64 * 1024, 0x20 + salt);
  }
}

test("our 2-disk chain: full → inc → inc → diff → offline inc, restored at every checkpoint", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 32 * MiB }, { size: 32 * MiB }], start: true });
  const work = await tempDir(t, "vnbt-rchain-");
  const set = join(work, "set");
  const backup = async (level: string) => assertOk(await ourBackup(["-d", d.name, "-l", level, "-o", set, "-n"]), level);
  const truths: Record<string, string>[] = [];
  // A copy of both disks as a zip archive on stdout (one worker, entries one after another).
  const cwd = join(work, "cwd");
  await mkdir(cwd);
  assertOk(await ourBackup(["-d", d.name, "-l", "copy", "-o", "-", "-n"], { cwd, stdoutFile: join(work, "copy.zip") }), "copy to zip");
  await restoreAndCompare(join(work, "copy.zip"), join(work, "copy"), [], await captureTruth(d), "2-disk copy from a zip");
  await change(d, 9);
  await backup("full");
  truths.push(await captureTruth(d));
  for (let i = 1; i <= 2; i++) {
    await change(d, i);
    // The live config changes too (title): each point's vmconfig differs.
    await sh("virsh", ["-c", "qemu:///system", "desc", d.name, "--live", "--title", `point ${i}`]);
    await backup("inc");
    truths.push(await captureTruth(d));
  }
  await change(d, 3);
  await backup("diff");
  const diffTruth = await captureTruth(d);
  await d.destroy();
  await change(d, 4);
  await backup("inc");
  const offlineTruth = await captureTruth(d);

  for (let i = 0; i < truths.length; i++) {
    await restoreAndCompare(set, join(work, `until${i}`), ["--until", `virtnbdbackup.${i}`, "-c"], truths[i]!, `--until virtnbdbackup.${i}`);
    // -c --until: the config of that point in time.
    const title = DomainXml.parse(await readFile(join(work, `until${i}`, "vmconfig.xml"), "utf8")).root.getElementsByTagName("title")[0];
    assert.equal(title?.textContent ?? null, i === 0 ? null : `point ${i}`, `--until virtnbdbackup.${i}: its vmconfig`);
  }
  // Uncompressed files in a directory: qemu-img reads them itself; the NBD path gives the same.
  const log = await restoreAndCompare(set, join(work, "all"), ["-v"], offlineTruth, "whole set (offline inc last)");
  assert.match(log, /qemu-img convert reads the backup files directly/);
  assert.match(await restoreAndCompare(set, join(work, "all-served"), ["-v"], offlineTruth, "whole set, served over NBD", CONVERT_NBD), /qemu-img convert reads our NBD server/);
  await restoreAndCompare(set, join(work, "all-nbd"), [], offlineTruth, "whole set, NBD-writes engine", NBD_WRITES);
  await restoreAndCompare(set, join(work, "until1-nbd"), ["--until", "virtnbdbackup.1"], truths[1]!, "--until 1, NBD-writes engine", NBD_WRITES);
  // A copy that lost the mtimes (newest file oldest): the order comes from the metadata.
  const scrambled = join(work, "scrambled");
  await cp(set, scrambled, { recursive: true });
  const files = (await readdir(scrambled)).sort();
  for (const [i, name] of files.entries()) await utimes(join(scrambled, name), 1_000_000 - i * 10, 1_000_000 - i * 10);
  await restoreAndCompare(scrambled, join(work, "scrambled-out"), [], offlineTruth, "copy with scrambled mtimes");
  // The diff alone on top of its parent.
  const diff = (await readdir(set)).filter((n) => /^sda\.diff\.\d+\.data$/.test(n));
  assert.equal(diff.length, 1);
  await restoreAndCompare(
    set,
    join(work, "seq"),
    ["--sequence", ["sda.full.data", "sda.inc.virtnbdbackup.1.data", "sda.inc.virtnbdbackup.2.data", diff[0]!].join(",")],
    {},
    "--sequence up to the diff",
  );
  assert.equal(await imageHash(join(work, "seq", "sda"), "qcow2"), diffTruth["sda"], "--sequence: sda at the diff");
});

test("our lz4 chains in a directory and as zip archives (a directory of zips, and one zip), restored at every checkpoint", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 32 * MiB }], start: true });
  const work = await tempDir(t, "vnbt-rzip-");

  // lz4 in a directory: full -z → inc -z → inc -z without changes (meta + stop + "[]") → diff -z
  // → inc -z. The diff carries the name of the checkpoint the last inc creates.
  const set = join(work, "lz4");
  const truths: Record<string, string>[] = [];
  for (const [i, level] of ["full", "inc", "inc", "diff", "inc"].entries()) {
    if (i !== 0 && i !== 2) await change(d, i + 10);
    const r = assertOk(await ourBackup(["-d", d.name, "-l", level, "-z", "-o", set, "-n"]), `${level} -z`);
    if (i === 2) assert.match(r.stderr, /No dirty blocks found/);
    truths.push(await captureTruth(d));
  }
  for (let i = 0; i <= 2; i++) {
    const r = await ourRestore(["-i", set, "-o", join(work, `lz4-${i}`), "-n", "--until", `virtnbdbackup.${i}`]);
    assertOk(r, `lz4 --until ${i}`);
    if (i === 2) assert.match(r.stderr, /File \[.*sda\.inc\.virtnbdbackup\.2\.data\] contains no dirty blocks, skipping\./);
    assert.equal(await imageHash(join(work, `lz4-${i}`, "sda.qcow2"), "qcow2"), truths[i]!["sda"], `lz4 --until ${i}`);
  }
  // --until virtnbdbackup.3: the state when the inc created it, not the older diff's.
  await restoreAndCompare(set, join(work, "lz4-3"), ["--until", "virtnbdbackup.3"], truths[4]!, "lz4 --until 3 (diff named 3 before it)");
  await restoreAndCompare(set, join(work, "lz4-all"), [], truths[4]!, "lz4 whole set");
  await restoreAndCompare(set, join(work, "lz4-all-nbd"), [], truths[4]!, "lz4 whole set, NBD-writes engine", NBD_WRITES);

  // Zip archives on stdout: full (plain) → inc -z → diff, one archive per run.
  const zips = join(work, "zips");
  const cwd = join(work, "cwd");
  await mkdir(zips);
  await mkdir(cwd);
  const zipTruths: Record<string, string>[] = [];
  for (const [i, [level, extra]] of ([["full", []], ["inc", ["-z"]], ["diff", []]] as const).entries()) {
    if (i > 0) await change(d, i + 20);
    assertOk(await ourBackup(["-d", d.name, "-l", level, ...extra, "-o", "-", "-n"], { cwd, stdoutFile: join(zips, `${i}-${level}.zip`) }), `${level} zip`);
    zipTruths.push(await captureTruth(d));
  }
  await restoreAndCompare(zips, join(work, "zip-0"), ["--until", "virtnbdbackup.0"], zipTruths[0]!, "zips --until 0");
  await restoreAndCompare(zips, join(work, "zip-1"), ["--until", "virtnbdbackup.1"], zipTruths[1]!, "zips --until 1");
  await restoreAndCompare(zips, join(work, "zip-all"), [], zipTruths[2]!, "zips whole chain");
  await restoreAndCompare(zips, join(work, "zip-all-nbd"), [], zipTruths[2]!, "zips whole chain, NBD-writes engine", NBD_WRITES);
  await restoreAndCompare(join(zips, "0-full.zip"), join(work, "zip-one"), [], zipTruths[0]!, "one zip file");
});
