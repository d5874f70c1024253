/**
 * Checkpoint handling against real libvirt/qemu (docs/behaviour.md, "Checkpoints"): a checkpoint libvirt forgot is
 * redefined from the saved XML and the inc still works; a broken bitmap (removed through QMP)
 * makes `-l inc` refuse with the cause and the command that fixes it (the original fell back to
 * a full-style stream under the inc name; restoring such sets: restore-engines.test.ts).
 * Restored by our virtnbdrestore at every checkpoint, bit-exact.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import * as C from "../../src/libvirt/constants.js";
import { testDomain, MiB } from "../helpers/domains.js";
import { assertOk, captureTruth, imageHash, ourBackup, ourRestore } from "../helpers/our-tool.js";
import { tempDir } from "../helpers/tmp.js";

test("forgotten checkpoint redefined; a broken bitmap: -l inc refuses and changes nothing", async (t) => {
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

  // The bitmap of the newest checkpoint disappears: -l inc refuses (never a silent full) and
  // changes nothing; -l auto starts a new generation (test/integration/checkpoint-heal.test.ts).
  await d.writePattern("sda", 9 * MiB, 512 * 1024, 0x91);
  const { node } = await d.blockNode("sda");
  await d.domain.qemuMonitorCommand(JSON.stringify({ execute: "block-dirty-bitmap-remove", arguments: { node, name: "virtnbdbackup.1" } }));
  const before = (await readdir(set)).sort();
  const refused = await backup("inc");
  assert.equal(refused.exitCode, 1, refused.stderr);
  assert.match(refused.stderr, /ERROR .*Unable to continue the chain of .*checkpoint \[virtnbdbackup\.1\] is unusable: .*missing or broken bitmap 'virtnbdbackup\.1'.*run \[-l auto\]/);
  assert.deepEqual((await readdir(set)).sort().filter((n) => !n.startsWith("backup.inc.")), before.filter((n) => !n.startsWith("backup.inc.")), "nothing but its log file");
  assert.deepEqual(JSON.parse(await readFile(join(set, `${d.name}.cpt`), "utf8")), ["virtnbdbackup.0", "virtnbdbackup.1"]);

  for (const [i, truth] of truths.entries()) {
    const out = join(work, `until${i}`);
    assertOk(await ourRestore(["-i", set, "-o", out, "-n", "--until", `virtnbdbackup.${i}`]), `--until ${i}`);
    assert.equal(await imageHash(join(out, "sda.qcow2"), "qcow2"), truth["sda"], `--until virtnbdbackup.${i}`);
  }
});
