import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  decideLevel,
  inspectTargetDir,
  partialFailure,
  TargetDirError,
  type GivenLevel,
  type TargetDirState,
} from "../../src/backup/target-dir.js";
import { tempDir } from "../helpers/tmp.js";

/** A directory holding exactly these (empty) files. */
async function dirWith(t: Parameters<typeof tempDir>[0], names: string[]): Promise<string> {
  const dir = await tempDir(t);
  for (const n of names) await writeFile(join(dir, n), "");
  return dir;
}

const inspect = async (dir: string): Promise<TargetDirState> => {
  const s = await inspectTargetDir(dir);
  return { ...s, partials: [...s.partials].sort() };
};

test("inspectTargetDir: a missing directory and an empty one are empty, without full or partials", async (t) => {
  const dir = await tempDir(t);
  assert.deepEqual(await inspect(join(dir, "not-there")), { empty: true, hasFull: false, partials: [] });
  assert.deepEqual(await inspect(dir), { empty: true, hasFull: false, partials: [] });
});

test("inspectTargetDir: log files, config, .cpt, checkpoint dir and stray files leave a directory empty", async (t) => {
  const dir = await dirWith(t, [
    "backup.full.11262026043638.log",
    "backup.auto.11262026043700.log",
    "vmconfig.virtnbdbackup.0.xml",
    "vm1.cpt",
    "notes.txt",
    "sda.qcow.json",
  ]);
  await mkdir(join(dir, "checkpoints"));
  await writeFile(join(dir, "checkpoints", "virtnbdbackup.0.xml"), "");
  assert.deepEqual(await inspect(dir), { empty: true, hasFull: false, partials: [] });
});

test("inspectTargetDir: a full backup makes the directory non-empty with a full", async (t) => {
  const dir = await dirWith(t, ["sda.full.data", "vda.full.data", "backup.full.11262026043638.log", "vm1.cpt"]);
  assert.deepEqual(await inspect(dir), { empty: false, hasFull: true, partials: [] });
});

test("inspectTargetDir: a full plus incs is non-empty with a full", async (t) => {
  const dir = await dirWith(t, ["sda.full.data", "sda.inc.virtnbdbackup.1.data", "sda.inc.virtnbdbackup.2.data"]);
  assert.deepEqual(await inspect(dir), { empty: false, hasFull: true, partials: [] });
});

test("inspectTargetDir: incs, diffs or a copy without a full are non-empty without a full", async (t) => {
  for (const names of [
    ["sda.inc.virtnbdbackup.1.data"],
    ["sda.diff.virtnbdbackup.1.1764131798.data"],
    ["sda.copy.data"],
    ["vda.copy.data", "vda.copy.data.chksum"],
  ]) {
    const dir = await dirWith(t, names);
    assert.deepEqual(await inspect(dir), { empty: false, hasFull: false, partials: [] }, names.join(","));
  }
});

test("inspectTargetDir: *.data* also matches .data.partial and .data.chksum, but only *.full.data is a full", async (t) => {
  const partial = await dirWith(t, ["sda.full.data.partial"]);
  assert.deepEqual(await inspect(partial), { empty: false, hasFull: false, partials: ["sda.full.data.partial"] });
  const chksum = await dirWith(t, ["sda.full.data.chksum"]);
  assert.deepEqual(await inspect(chksum), { empty: false, hasFull: false, partials: [] });
  const renamed = await dirWith(t, ["sda.full.data.bak"]);
  assert.deepEqual(await inspect(renamed), { empty: false, hasFull: false, partials: [] });
  const stray = await dirWith(t, ["my.database.sql"]);
  assert.deepEqual(await inspect(stray), { empty: false, hasFull: false, partials: [] }, "the glob is *.data*");
});

test("inspectTargetDir: every *.partial is listed, data files and side files alike", async (t) => {
  const dir = await dirWith(t, [
    "sda.full.data",
    "sda.inc.virtnbdbackup.1.data.partial",
    "vmconfig.virtnbdbackup.1.xml.partial",
    "vm1.run.partial",
    "sda.inc.virtnbdbackup.1.data.partial.log",
    "partial.txt",
  ]);
  assert.deepEqual(await inspect(dir), {
    empty: false,
    hasFull: true,
    partials: ["sda.inc.virtnbdbackup.1.data.partial", "vm1.run.partial", "vmconfig.virtnbdbackup.1.xml.partial"],
  });
  const sideOnly = await dirWith(t, ["vmconfig.virtnbdbackup.0.xml.partial"]);
  assert.deepEqual(await inspect(sideOnly), { empty: true, hasFull: false, partials: ["vmconfig.virtnbdbackup.0.xml.partial"] });
});

test("inspectTargetDir: a target that is a file is an error, not an empty directory", async (t) => {
  const dir = await dirWith(t, ["file"]);
  await assert.rejects(inspectTargetDir(join(dir, "file")), { code: "ENOTDIR" });
});

const DIR = "/backups/vm1";
const EMPTY: TargetDirState = { empty: true, hasFull: false, partials: [] };
const FULL: TargetDirState = { empty: false, hasFull: true, partials: [] };
const NO_FULL: TargetDirState = { empty: false, hasFull: false, partials: [] };

function refusal(given: GivenLevel, state: TargetDirState, skip: boolean): string[] {
  try {
    decideLevel(given, state, DIR, skip);
  } catch (e) {
    assert.ok(e instanceof TargetDirError, `${given}: a TargetDirError`);
    assert.equal(e.message, e.lines[0]);
    return e.lines;
  }
  assert.fail(`${given} was not refused`);
}

test("decideLevel auto: full into an empty dir, inc into a dir with a full, refused without a full", () => {
  for (const skip of [false, true]) {
    assert.deepEqual(decideLevel("auto", EMPTY, DIR, skip), {
      level: "full",
      message: "Backup mode auto, target folder is empty: executing full backup.",
    });
    assert.deepEqual(decideLevel("auto", FULL, DIR, skip), { level: "inc", message: "Backup mode auto: executing incremental backup." });
    assert.deepEqual(refusal("auto", NO_FULL, skip), [
      "Can't execute switch to auto incremental backup: specified target folder [/backups/vm1] does not contain full backup.",
    ]);
  }
});

test("decideLevel auto: an empty dir with a stray .partial is still a full; partials do not change the decision", () => {
  assert.equal(decideLevel("auto", { ...EMPTY, partials: ["x.xml.partial"] }, DIR, false).level, "full");
  assert.equal(decideLevel("auto", { ...FULL, partials: ["sda.inc.virtnbdbackup.1.data.partial"] }, DIR, false).level, "inc");
});

test("decideLevel full/copy: allowed into an empty dir, refused into a used one unless the content check is skipped", () => {
  for (const given of ["full", "copy"] as const) {
    assert.deepEqual(decideLevel(given, EMPTY, DIR, false), { level: given });
    assert.deepEqual(decideLevel(given, EMPTY, DIR, true), { level: given });
    for (const state of [FULL, NO_FULL]) {
      assert.deepEqual(refusal(given, state, false), ["Target directory already contains full or copy backup."]);
      assert.deepEqual(decideLevel(given, state, DIR, true), { level: given }, "stdout, -s and -k skip the check");
    }
  }
});

test("decideLevel inc/diff: allowed with a full, refused without one unless the content check is skipped", () => {
  for (const given of ["inc", "diff"] as const) {
    assert.deepEqual(decideLevel(given, FULL, DIR, false), { level: given });
    assert.deepEqual(decideLevel(given, FULL, DIR, true), { level: given });
    for (const state of [EMPTY, NO_FULL]) {
      assert.deepEqual(refusal(given, state, false), [
        `Unable to execute [${given}] backup: No full backup found in target directory: [/backups/vm1]`,
      ]);
      assert.deepEqual(decideLevel(given, state, DIR, true), { level: given }, "stdout mode skips the check");
    }
  }
});

test("partialFailure: null without partials, the original's three lines with any", () => {
  assert.equal(partialFailure(EMPTY, DIR), null);
  assert.equal(partialFailure(FULL, DIR), null);
  for (const partials of [["sda.inc.virtnbdbackup.1.data.partial"], ["vm1.run.partial", "vmconfig.virtnbdbackup.1.xml.partial"]]) {
    const err = partialFailure({ ...FULL, partials }, DIR);
    assert.ok(err instanceof TargetDirError);
    assert.deepEqual(err.lines, [
      "Partial backup found in target directory: [/backups/vm1]",
      "One of the last backups seems to have failed.",
      "Consider re-executing full backup.",
    ]);
    assert.equal(err.message, "Partial backup found in target directory: [/backups/vm1]");
  }
});

test("inspectTargetDir → partialFailure on a directory left by a failed inc", async (t) => {
  const dir = await dirWith(t, ["sda.full.data", "sda.inc.virtnbdbackup.1.data.partial"]);
  const state = await inspectTargetDir(dir);
  assert.equal(decideLevel("inc", state, dir, false).level, "inc");
  assert.equal(partialFailure(state, dir)?.lines[0], `Partial backup found in target directory: [${dir}]`);
});
