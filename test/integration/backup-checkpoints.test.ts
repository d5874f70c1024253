/**
 * Checkpoint handling against real libvirt/qemu (docs/behaviour.md, "Checkpoints"): a checkpoint libvirt forgot is
 * redefined from the saved XML and the inc still works; a broken bitmap (removed through QMP)
 * turns the inc into a full-style stream under the inc name, whose zero frames restore as zeros
 * over older data (README "Differences"); the chain goes on from there. Restored by our
 * virtnbdrestore at every checkpoint, bit-exact against the disk content at backup time.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import * as C from "../../src/libvirt/constants.js";
import { StreamReader } from "../../src/format/reader.js";
import { DirectorySource } from "../../src/storage/directory-source.js";
import { testDomain, MiB } from "../helpers/domains.js";
import { assertOk, captureTruth, imageHash, ourBackup, ourRestore } from "../helpers/our-tool.js";
import { PY_RESTORE, runPython } from "../helpers/python-tool.js";
import { tempDir } from "../helpers/tmp.js";

test("forgotten checkpoint redefined; broken bitmap → full-style inc whose zero frames win over older data", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 32 * MiB }], start: true });
  const work = await tempDir(t, "vnbt-cpt-");
  const set = join(work, "set");
  const backup = (level: string) => ourBackup(["-d", d.name, "-l", level, "-o", set, "-n"]);
  const truths: Record<string, string>[] = [];
  assertOk(await backup("full"), "full");
  truths.push(await captureTruth(d));

  // libvirt loses the checkpoint's metadata (a transient domain, another host): redefined.
  await d.writeRandom("sda", 3 * MiB, MiB, 801);
  const cp0 = await d.domain.checkpointLookupByName("virtnbdbackup.0");
  await cp0.delete(C.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY);
  cp0.free();
  const redefined = assertOk(await backup("inc"), "inc after metadata loss");
  assert.match(redefined.stderr, /Redefine missing checkpoint: \[virtnbdbackup\.0\]/);
  truths.push(await captureTruth(d));

  // The bitmap of the newest checkpoint disappears: the inc falls back to a full-style stream.
  // The first MiB (data since the full) is zeroed first: its zero frame must win on restore.
  await d.writeZeroes("sda", 0, MiB);
  await d.writePattern("sda", 9 * MiB, 512 * 1024, 0x91);
  const { node } = await d.blockNode("sda");
  await d.domain.qemuMonitorCommand(JSON.stringify({ execute: "block-dirty-bitmap-remove", arguments: { node, name: "virtnbdbackup.1" } }));
  const fallback = assertOk(await backup("inc"), "inc with a broken parent");
  assert.match(fallback.stderr, /WARNING .*Checkpoint \[virtnbdbackup\.1\] is invalid, switching backup to full\./);
  truths.push(await captureTruth(d));
  const source = new DirectorySource(set);
  const file = await source.open("sda.inc.virtnbdbackup.2.data");
  try {
    const meta = (await StreamReader.open(file, { trailer: false })).meta;
    assert.equal(meta.incremental, false, "full-style stream under the inc name");
    assert.equal(meta.parentCheckpoint, "");
    assert.equal(meta.checkpointName, "virtnbdbackup.2");
  } finally {
    await file.close();
  }

  await d.writeRandom("sda", 20 * MiB, MiB, 802);
  assertOk(await backup("inc"), "inc after the fallback");
  truths.push(await captureTruth(d));
  assert.deepEqual(JSON.parse(await readFile(join(set, `${d.name}.cpt`), "utf8")), ["virtnbdbackup.0", "virtnbdbackup.1", "virtnbdbackup.2", "virtnbdbackup.3"]);

  for (const [i, truth] of truths.entries()) {
    const out = join(work, `until${i}`);
    assertOk(await ourRestore(["-i", set, "-o", out, "-n", "--until", `virtnbdbackup.${i}`]), `--until ${i}`);
    assert.equal(await imageHash(join(out, "sda.qcow2"), "qcow2"), truth["sda"], `--until virtnbdbackup.${i}`);
  }
  // For the record: the original ignores zero frames, so its restore keeps the old data there.
  const py = await runPython(PY_RESTORE, ["-i", set, "-o", join(work, "py"), "-n"]);
  if (py.exitCode === 0) {
    const same = (await imageHash(join(work, "py", "sda.qcow2"), "qcow2")) === truths[3]!["sda"];
    t.diagnostic(`Python 1.9.15 restore of the same set is ${same ? "bit-exact" : "NOT bit-exact (stale data under the zero frames)"}`);
  }
});
