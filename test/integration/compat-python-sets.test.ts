/**
 * Sets made by the original's virtnbdbackup (Debian 1.9.15) from a real domain, restored by our
 * virtnbdrestore: full → inc → inc → diff plain, full → inc → diff with lz4, and zip archives
 * (lz4) read in place; `--until` at every checkpoint; compared bit-exact with the true disk
 * content read through NBD right after each backup.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { testDomain, MiB, type TestDomain } from "../helpers/domains.js";
import { backup } from "../helpers/map-backups.js";
import { assertOk, captureTruth, imageHash, ourRestore } from "../helpers/our-tool.js";
import { tempDir } from "../helpers/tmp.js";

async function change(d: TestDomain, salt: number): Promise<void> {
  await d.writeRandom("sda", (salt % 6) * 5 * MiB + 8192, 640 * 1024, 500 + salt);
  await d.writePattern("sda", (24 + (salt % 7)) * MiB, 128 * 1024, 0x40 + salt);
}

async function restoreAndCompare(input: string, out: string, extra: string[], truth: string, label: string): Promise<void> {
  const r = assertOk(await ourRestore(["-i", input, "-o", out, "-n", ...extra]), `restore ${label}`);
  assert.doesNotMatch(r.stderr, /ERROR/, r.stderr);
  assert.equal(await imageHash(join(out, "sda.qcow2"), "qcow2"), truth, label);
}

type Level = "full" | "inc" | "diff";

/** Our dump lists every stream's metadata; our verify passes the set (no .chksum in 1.9.15 sets). */
async function dumpAndVerify(input: string, expected: { level: string; checkpointName: string; compressed: boolean }[], label: string): Promise<void> {
  const dump = assertOk(await ourRestore(["-i", input, "-o", "dump"]), `dump ${label}`);
  const metas = JSON.parse(dump.stdout) as { checkpointName: string; compressed: number | boolean; incremental: boolean; streamVersion: number }[];
  assert.deepEqual(
    metas.map((m) => ({ checkpointName: m.checkpointName, compressed: m.compressed !== false, incremental: m.incremental })).sort((a, b) => a.checkpointName.localeCompare(b.checkpointName)),
    expected.map((e) => ({ checkpointName: e.checkpointName, compressed: e.compressed, incremental: e.level !== "full" })).sort((a, b) => a.checkpointName.localeCompare(b.checkpointName)),
    `dump ${label}`,
  );
  const verify = assertOk(await ourRestore(["-i", input, "-o", "verify"]), `verify ${label}`);
  assert.match(verify.stderr, /No checksum found, skipping/);
  assert.match(verify.stderr, /Backup chain of disk \[sda\]: \d+ file\(s\), complete\./);
  assert.doesNotMatch(verify.stderr, /ERROR/);
}

test("Python 1.9.15 sets (plain, lz4, lz4 zips) restored by ours at every checkpoint, bit-exact", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 32 * MiB }], start: true });
  const work = await tempDir(t, "vnbt-pyset-");
  let salt = 0;
  const chain = async (levels: Level[], o: { dir: string; compress?: boolean; zip?: boolean }): Promise<string[]> => {
    const truths: string[] = [];
    await mkdir(o.dir, { recursive: true });
    for (const [i, level] of levels.entries()) {
      if (i > 0) await change(d, ++salt);
      if (o.zip) await backup("python", { domain: d.name, level, zip: join(o.dir, `${i}-${level}.zip`), cwd: join(work, "zip-cwd"), compress: o.compress });
      else await backup("python", { domain: d.name, level, dir: o.dir, compress: o.compress });
      truths.push((await captureTruth(d))["sda"]!);
    }
    assert.equal(new Set(truths).size, truths.length, "every point differs");
    return truths;
  };
  await mkdir(join(work, "zip-cwd"));

  const plain = await chain(["full", "inc", "inc", "diff"], { dir: join(work, "plain") });
  assert.ok((await readdir(join(work, "plain"))).some((n) => /^sda\.diff\.\d+\.data$/.test(n)));
  for (let i = 0; i < 3; i++) {
    await restoreAndCompare(join(work, "plain"), join(work, `plain-${i}`), ["--until", `virtnbdbackup.${i}`], plain[i]!, `plain --until virtnbdbackup.${i}`);
  }
  await restoreAndCompare(join(work, "plain"), join(work, "plain-all"), [], plain[3]!, "plain whole set (diff last)");
  await dumpAndVerify(join(work, "plain"), [
    { level: "full", checkpointName: "virtnbdbackup.0", compressed: false },
    { level: "inc", checkpointName: "virtnbdbackup.1", compressed: false },
    { level: "inc", checkpointName: "virtnbdbackup.2", compressed: false },
    { level: "diff", checkpointName: "virtnbdbackup.3", compressed: false },
  ], "plain");

  const lz4 = await chain(["full", "inc", "diff"], { dir: join(work, "lz4"), compress: true });
  await restoreAndCompare(join(work, "lz4"), join(work, "lz4-0"), ["--until", "virtnbdbackup.0"], lz4[0]!, "lz4 --until 0");
  await restoreAndCompare(join(work, "lz4"), join(work, "lz4-1"), ["--until", "virtnbdbackup.1"], lz4[1]!, "lz4 --until 1");
  await restoreAndCompare(join(work, "lz4"), join(work, "lz4-all"), [], lz4[2]!, "lz4 whole set");
  const lz4Metas = [
    { level: "full", checkpointName: "virtnbdbackup.0", compressed: true },
    { level: "inc", checkpointName: "virtnbdbackup.1", compressed: true },
    { level: "diff", checkpointName: "virtnbdbackup.2", compressed: true },
  ];
  await dumpAndVerify(join(work, "lz4"), lz4Metas, "lz4");

  const zips = await chain(["full", "inc", "diff"], { dir: join(work, "zips"), compress: true, zip: true });
  await restoreAndCompare(join(work, "zips"), join(work, "zip-0"), ["--until", "virtnbdbackup.0"], zips[0]!, "zips --until 0");
  await restoreAndCompare(join(work, "zips"), join(work, "zip-1"), ["--until", "virtnbdbackup.1"], zips[1]!, "zips --until 1");
  await restoreAndCompare(join(work, "zips"), join(work, "zip-all"), [], zips[2]!, "zips whole chain");
  await dumpAndVerify(join(work, "zips"), lz4Metas, "zips read in place");
});

test("Python 1.9.15 offline inc that replaced the online inc: refused with the reason, the full still restores", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 16 * MiB }], start: true });
  const work = await tempDir(t, "vnbt-pyoff-");
  const set = join(work, "set");
  await mkdir(set);
  await backup("python", { domain: d.name, level: "full", dir: set });
  const truth0 = (await captureTruth(d))["sda"]!;
  await d.writeRandom("sda", MiB, MiB, 551);
  await backup("python", { domain: d.name, level: "inc", dir: set });
  await d.destroy();
  await d.writeRandom("sda", 5 * MiB, MiB, 552);
  // 1.9.15 names the offline inc like the online inc of the latest checkpoint: it replaces it.
  // (Its offline run leaves qemu-nbd's pid file in /var/tmp: removed afterwards.)
  const before = new Set(await readdir("/var/tmp"));
  t.after(async () => {
    for (const n of await readdir("/var/tmp")) if (!before.has(n) && /^virtnbdbackup\.\d+\.sda\.pid$/.test(n)) await rm(join("/var/tmp", n), { force: true });
  });
  await backup("python", { domain: d.name, level: "inc", dir: set });
  assert.deepEqual((await readdir(set)).filter((n) => n.endsWith(".data")).sort(), ["sda.full.data", "sda.inc.virtnbdbackup.1.data"]);

  const r = await ourRestore(["-i", set, "-o", join(work, "all"), "-n"]);
  assert.equal(r.exitCode, 1, r.all);
  assert.match(r.stderr, /ERROR .*offline incremental that replaced the incremental which created \[virtnbdbackup\.1\].*--until/);
  assert.deepEqual(await readdir(join(work, "all")).catch(() => []), []);
  await restoreAndCompare(set, join(work, "until0"), ["--until", "virtnbdbackup.0"], truth0, "--until virtnbdbackup.0");
});
