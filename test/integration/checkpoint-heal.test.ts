/**
 * Checkpoints that heal themselves (docs/behaviour.md, "Checkpoint drift"), on real libvirt +
 * qemu: each drift class made for real, then `-l auto` with no manual step: the chain goes on,
 * or a new generation starts with one WARNING naming the cause; then every point restores
 * bit-exact. Also: the strict refusals of `-l inc`, `--check`, independent chains, and the
 * Python tool restoring the healed generations. A SIGKILLed run, the lock and a libvirtd
 * restart: checkpoint-heal-kill.test.ts (it runs alone, after a fresh libvirtd).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { listBlockBitmaps } from "../../src/libvirt/block-bitmaps.js";
import { testDomain, MiB } from "../helpers/domains.js";
import { assertOk, imageHash, logLines, ourRestore } from "../helpers/our-tool.js";
import { PY_RESTORE, runPython } from "../helpers/python-tool.js";
import { tempDir } from "../helpers/tmp.js";

import { autoPoint, backup, check, removeBitmap, restoresEveryPoint, virsh, warnings, type Point } from "../helpers/heal.js";

test("metadata lost, a foreign checkpoint, a lost bitmap: auto continues twice, then starts generation 2; inc refuses; every point restores", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 32 * MiB }], start: true });
  const work = await tempDir(t, "vnbt-heal-a-");
  const set = join(work, "set");
  const points: Point[] = [];
  points.push(await autoPoint(d, set, "first auto (full)"));
  const healthy = await check(d, set);
  assert.equal(healthy.exitCode, 0, healthy.stderr);
  assert.match(healthy.stderr, /Healthy: .*continues from \[virtnbdbackup\.0\]/);
  assert.ok(!existsSync(join(set, "backup.copy.log")) && (await readdir(set)).every((n) => !n.startsWith("backup.copy")), "--check writes no log file");

  // 3: libvirt loses the checkpoint metadata, the bitmaps stay: redefined from the set.
  await d.writeRandom("sda", 3 * MiB, MiB, 1);
  await virsh("checkpoint-delete", d.name, "virtnbdbackup.0", "--metadata");
  const lost = await check(d, set);
  assert.equal(lost.exitCode, 1);
  assert.match(lost.stderr, /Checkpoint \[virtnbdbackup\.0\] of the set is unknown to libvirt/);
  const redefined = await autoPoint(d, set, "auto after metadata loss");
  assert.match(redefined.run.stderr, /Redefine missing checkpoint: \[virtnbdbackup\.0\]/);
  assert.deepEqual(warnings(redefined.run), []);
  assert.equal(redefined.checkpoint, "virtnbdbackup.1");
  points.push(redefined);

  // 8: another tool's checkpoint after ours: auto keeps it and goes on (libvirt vouches for it).
  await d.writePattern("sda", 8 * MiB, MiB, 0x5a);
  await virsh("checkpoint-create-as", d.name, "--name", "external-tool", "--diskspec", "sda");
  const strictInc = await backup(d, set, "inc");
  assert.equal(strictInc.exitCode, 1, "the original's refusal of a foreign checkpoint stays for -l inc");
  assert.match(strictInc.stderr, /Foreign checkpoint found: \[external-tool\]/);
  await d.writePattern("sda", 9 * MiB, MiB, 0x5b);
  const afterForeign = await autoPoint(d, set, "auto after a foreign checkpoint");
  assert.deepEqual(warnings(afterForeign.run), []);
  points.push(afterForeign);
  await virsh("checkpoint-info", d.name, "external-tool");

  // 2: the bitmap of our newest checkpoint is removed through QMP.
  await d.writeRandom("sda", 12 * MiB, 2 * MiB, 2);
  await removeBitmap(d, "sda", afterForeign.checkpoint);
  const refused = await backup(d, set, "inc");
  assert.equal(refused.exitCode, 1, "-l inc never falls back to a silent full (here the foreign checkpoint refuses first)");
  const broken = await check(d, set);
  assert.equal(broken.exitCode, 1);
  assert.match(broken.stderr, /Disk \[sda\] has no bitmap \[virtnbdbackup\.2\]/);
  const healed = await autoPoint(d, set, "auto after a lost bitmap");
  const w = warnings(healed.run);
  assert.equal(w.length, 1, healed.run.stderr);
  assert.match(w[0]!, /Chain of \[.*\/set\] cannot continue: checkpoint \[virtnbdbackup\.2\] is unusable: .*Starting a new chain in \[.*\/set\/generation\.2\] with a full backup\./);
  assert.equal(healed.checkpoint, "virtnbdbackup.3", "numbering goes on across generations");
  assert.ok(existsSync(join(set, "generation.2", "sda.full.data")));
  assert.deepEqual(JSON.parse(await readFile(join(set, `${d.name}.cpt`), "utf8")), ["virtnbdbackup.0", "virtnbdbackup.1", "virtnbdbackup.2"], "generation 1 untouched");
  points.push(healed);

  await d.writeRandom("sda", 20 * MiB, MiB, 3);
  const next = await autoPoint(d, set, "inc in generation 2");
  assert.equal(next.checkpoint, "virtnbdbackup.4");
  assert.ok(existsSync(join(set, "generation.2", "sda.inc.virtnbdbackup.4.data")));
  points.push(next);
  const cps = (await virsh("checkpoint-list", d.name, "--name")).split("\n").filter(Boolean).sort();
  assert.deepEqual(cps, ["external-tool", "virtnbdbackup.3", "virtnbdbackup.4"], "a chain that starts over drops its own old checkpoints, never a foreign one");
  const bitmaps = (await listBlockBitmaps(d.domain)).find((x) => x.target === "sda")!.bitmaps.map((b) => b.name).sort();
  assert.deepEqual(bitmaps, ["external-tool", "virtnbdbackup.3", "virtnbdbackup.4"], "the foreign bitmap stays too");
  const foreign = await check(d, set);
  assert.equal(foreign.exitCode, 1);
  assert.deepEqual(warnings(foreign).map((l) => l.replace(/^.*?\]: /, "")), ["Foreign checkpoint [external-tool]: -l full/inc/diff refuse to run while it exists (-l auto keeps it)."]);
  await virsh("checkpoint-delete", d.name, "external-tool");
  assert.equal((await check(d, set)).exitCode, 0);

  await restoresEveryPoint(work, set, points);
  // The Python tool restores generation 1 from the top level, generation 2 from its folder.
  const py1 = await runPython(PY_RESTORE, ["-i", set, "-o", join(work, "py1"), "-n"]);
  assert.equal(py1.exitCode, 0, String(py1.stderr));
  assert.equal(await imageHash(join(work, "py1", "sda.qcow2"), "qcow2"), points[2]!.truth["sda"]);
  const py2 = await runPython(PY_RESTORE, ["-i", join(set, "generation.2"), "-o", join(work, "py2"), "-n"]);
  assert.equal(py2.exitCode, 0, String(py2.stderr));
  assert.equal(await imageHash(join(work, "py2", "sda.qcow2"), "qcow2"), points[4]!.truth["sda"]);
});

test("domain undefined and defined again, an offline inc between online ones, bitmaps left in-use by a crashed qemu-nbd: auto heals each", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 32 * MiB }], start: true });
  const work = await tempDir(t, "vnbt-heal-b-");
  const set = join(work, "set");
  const points: Point[] = [await autoPoint(d, set, "full")];

  // 4: undefined (shut off: libvirt forgets its checkpoints) and defined again from its XML.
  await d.writeRandom("sda", 2 * MiB, MiB, 11);
  await d.destroy();
  await d.redefine();
  assert.equal((await virsh("checkpoint-list", d.name, "--name")).trim(), "", "libvirt forgot the checkpoints");
  await d.start();
  const redefined = await autoPoint(d, set, "auto after undefine/define");
  assert.match(redefined.run.stderr, /Redefine missing checkpoint: \[virtnbdbackup\.0\]/);
  assert.deepEqual(warnings(redefined.run), []);
  points.push(redefined);

  // 10: shut off for one backup (offline inc of the newest bitmap), running for the next.
  await d.writePattern("sda", 5 * MiB, MiB, 0x21);
  await d.destroy();
  await d.writePattern("sda", 6 * MiB, MiB, 0x22);
  const offline = assertOk(await backup(d, set, "auto"), "offline auto");
  assert.deepEqual(warnings(offline), []);
  assert.match(offline.stderr, /Offline backup, using latest checkpoint/);
  await d.start();
  await d.writePattern("sda", 7 * MiB, MiB, 0x23);
  const online = await autoPoint(d, set, "online auto after the offline one");
  assert.deepEqual(warnings(online.run), []);
  points.push(online);

  // 1: a qemu-nbd that had the image open read-write is killed: bitmaps flagged in-use.
  await d.destroy();
  await d.writePattern("sda", 9 * MiB, MiB, 0x24);
  await d.crashQemuNbdOn("sda");
  const inUse = await check(d, set);
  assert.equal(inUse.exitCode, 1);
  assert.match(inUse.stderr, /Bitmap \[virtnbdbackup\.\d\] of disk \[sda\] is flagged in-use/);
  await d.start();
  const healed = await autoPoint(d, set, "auto after a crashed qemu-nbd");
  const w = warnings(healed.run);
  assert.equal(w.length, 1, healed.run.stderr);
  assert.match(w[0]!, /cannot continue: .*Starting a new chain in \[.*generation\.2\]/);
  // The in-use bitmaps are gone: libvirt deleted them with their checkpoints (or, where it
  // refused, the metadata went and the bitmap was removed as a stale one).
  assert.equal((await check(d, set)).exitCode, 0, "no bitmap flagged in-use is left");
  assert.doesNotMatch(healed.run.stderr, /already exists/);
  points.push(healed);
  await d.writeRandom("sda", 15 * MiB, MiB, 12);
  points.push(await autoPoint(d, set, "inc after healing"));
  assert.equal((await check(d, set)).exitCode, 0);
  await restoresEveryPoint(work, set, points);

  // The trap: in-use bitmaps again, then -l full into a new folder: it removes the
  // checkpoint metadata and the stale bitmaps, and never fails with "Bitmap already exists".
  await d.destroy();
  await d.crashQemuNbdOn("sda");
  await d.start();
  const fresh = join(work, "fresh");
  for (const round of [1, 2]) {
    const full = assertOk(await backup(d, join(fresh, String(round)), "full"), `full ${round} after in-use bitmaps`);
    assert.doesNotMatch(full.stderr, /already exists/);
  }
});

test("independent chains: a daily and a weekly target alternate fulls and incs; a new monthly folder; every point of each restores", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 32 * MiB }], start: true });
  const work = await tempDir(t, "vnbt-heal-chains-");
  const daily = join(work, "daily");
  const weekly = join(work, "weekly");
  const pointsDaily: Point[] = [];
  const pointsWeekly: Point[] = [];
  pointsDaily.push(await autoPoint(d, daily, "daily full"));
  await d.writeRandom("sda", MiB, MiB, 31);
  pointsWeekly.push(await autoPoint(d, weekly, "weekly full", ["--chain", "weekly"]));
  assert.equal(pointsWeekly[0]!.checkpoint, "virtnbdbackup.weekly.0");
  await d.writeRandom("sda", 4 * MiB, MiB, 32);
  pointsDaily.push(await autoPoint(d, daily, "daily inc"));
  await d.writeRandom("sda", 6 * MiB, MiB, 33);
  pointsWeekly.push(await autoPoint(d, weekly, "weekly inc", ["--chain", "weekly"]));
  await d.writeRandom("sda", 8 * MiB, MiB, 34);
  // A full of the daily chain (a new folder: monthly rotation) leaves the weekly checkpoints alone.
  const monthly = join(work, "daily-next-month");
  const full = await autoPoint(d, monthly, "daily full into a new folder");
  assert.match(full.run.stderr, /target folder is empty: executing full backup/);
  const cps = (await virsh("checkpoint-list", d.name, "--name")).split("\n").filter(Boolean).sort();
  assert.deepEqual(cps, ["virtnbdbackup.0", "virtnbdbackup.weekly.0", "virtnbdbackup.weekly.1"]);
  await d.writeRandom("sda", 10 * MiB, MiB, 35);
  pointsWeekly.push(await autoPoint(d, weekly, "weekly inc after the daily full", ["--chain", "weekly"]));
  const mismatch = await backup(d, weekly, "auto");
  assert.equal(mismatch.exitCode, 1);
  assert.match(logLines(mismatch, "ERROR")[0]!, /not of the default chain.*back up this target with the option it was made with/);
  await restoresEveryPoint(join(work, "r-daily"), daily, pointsDaily);
  await restoresEveryPoint(join(work, "r-weekly"), weekly, pointsWeekly);
  await restoresEveryPoint(join(work, "r-monthly"), monthly, [full]);
});

test("a disk added, a disk grown and written in the new area, a disk removed: auto starts a generation or goes on; every point restores", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 32 * MiB }], start: true, scsiController: true });
  const work = await tempDir(t, "vnbt-heal-disks-");
  const set = join(work, "set");
  const points: Point[] = [await autoPoint(d, set, "full")];

  // 5: a disk added (hot-plugged), written.
  await d.attachDisk("sdb", 16 * MiB);
  await d.writeRandom("sdb", MiB, 2 * MiB, 51);
  await d.writeRandom("sda", 2 * MiB, MiB, 52);
  const found = await check(d, set);
  assert.equal(found.exitCode, 1);
  assert.match(found.stderr, /The chain cannot continue: disk \[sdb\] was added after checkpoint \[virtnbdbackup\.0\]/);
  const incRefused = await backup(d, set, "inc");
  assert.equal(incRefused.exitCode, 1);
  assert.match(logLines(incRefused, "ERROR")[0]!, /disk \[sdb\] was added after checkpoint \[virtnbdbackup\.0\]: run \[-l auto\]/);
  const added = await autoPoint(d, set, "auto after a disk was added");
  assert.equal(warnings(added.run).length, 1, added.run.stderr);
  assert.match(warnings(added.run)[0]!, /disk \[sdb\] was added after checkpoint \[virtnbdbackup\.0\]\. Starting a new chain in \[.*generation\.2\]/);
  points.push(added);
  await d.writeRandom("sdb", 8 * MiB, MiB, 53);
  points.push(await autoPoint(d, set, "inc of both disks"));

  // 7: a disk grown (blockresize) and written in the new area.
  await d.blockResize("sda", 48 * MiB);
  await d.writeRandom("sda", 40 * MiB, 2 * MiB, 54);
  const grown = await autoPoint(d, set, "auto after blockresize");
  assert.equal(warnings(grown.run).length, 1, grown.run.stderr);
  assert.match(warnings(grown.run)[0]!, /disk \[sda\] changed size from \[32\.0 ?MiB\] to \[48\.0 ?MiB\].*generation\.3/);
  points.push(grown);

  // 6: a disk removed: the others go on (or start over, with the one warning naming why).
  await d.detachDisk("sdb");
  await d.writeRandom("sda", 44 * MiB, MiB, 55);
  const removed = await autoPoint(d, set, "auto after a disk was removed");
  assert.ok(warnings(removed.run).length <= 1, removed.run.stderr);
  t.diagnostic(`after detach: ${warnings(removed.run)[0] ?? "the chain went on"}`);
  points.push(removed);
  await d.writeRandom("sda", 46 * MiB, MiB, 56);
  points.push(await autoPoint(d, set, "inc after the removal"));
  assert.equal((await check(d, set)).exitCode, 0);
  await restoresEveryPoint(work, set, points);
});

test("offline with bitmaps in-use: the new generation is a copy; the next online auto starts one with a full", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 32 * MiB }], start: true });
  const work = await tempDir(t, "vnbt-heal-offline-");
  const set = join(work, "set");
  const points: Point[] = [await autoPoint(d, set, "full")];
  await d.destroy();
  await d.writeRandom("sda", 4 * MiB, MiB, 61);
  await d.crashQemuNbdOn("sda");
  const refused = await backup(d, set, "inc");
  assert.equal(refused.exitCode, 1);
  assert.match(logLines(refused, "ERROR")[0]!, /bitmap \[virtnbdbackup\.0\] of disk \[sda\] is flagged in-use .*run \[-l auto\]/);
  const copy = assertOk(await backup(d, set, "auto"), "offline auto");
  assert.equal(warnings(copy).length, 1, copy.stderr);
  assert.match(warnings(copy)[0]!, /flagged in-use.*Starting a new chain in \[.*generation\.2\] with a copy backup/);
  assert.match(copy.stderr, /Removed stale bitmap \[virtnbdbackup\.0\] of disk \[sda\]/);
  const offTruth = await d.diskHash("sda");
  assertOk(await ourRestore(["-i", join(set, "generation.2"), "-o", join(work, "r-copy"), "-n"]), "restore the copy");
  assert.equal(await imageHash(join(work, "r-copy", "sda.qcow2"), "qcow2"), offTruth);

  await d.start();
  await d.writeRandom("sda", 8 * MiB, MiB, 62);
  const full = await autoPoint(d, set, "online auto after the offline copy");
  assert.equal(warnings(full.run).length, 1, full.run.stderr);
  assert.match(warnings(full.run)[0]!, /holds a copy backup only.*Starting a new chain in \[.*generation\.3\] with a full backup/);
  assert.equal(full.checkpoint, "virtnbdbackup.1");
  points.push(full);
  await d.writeRandom("sda", 12 * MiB, MiB, 63);
  points.push(await autoPoint(d, set, "inc in generation 3"));
  await restoresEveryPoint(work, set, points);
});
