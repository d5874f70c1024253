/**
 * Thin restores (abbbi/virtnbdbackup #274: a mostly empty VM restored almost fully allocated):
 * a sparse 4 GiB disk of a real TCG domain, full + inc, restored by every engine; the restored
 * image's allocation stays within 5 % of the data the chain holds (plus qcow2's own metadata),
 * and the content is bit-exact (docs/behaviour.md, "Applying the chain").
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { testDomain, MiB } from "../helpers/domains.js";
import { assertOk, captureTruth, imageHash, ourBackup, ourRestore } from "../helpers/our-tool.js";
import { tempDir } from "../helpers/tmp.js";

const GiB = 1024 * MiB;

test("a sparse 4 GiB disk restores thin with every engine, bit-exact", async (t) => {
  const content = [
    { seed: 71, offset: 0, length: 16 * MiB },
    { seed: 72, offset: GiB, length: 24 * MiB },
    { pattern: 0x3c, offset: 3 * GiB, length: 8 * MiB },
  ];
  const d = await testDomain(t, { disks: [{ size: 4 * GiB, content }], start: true });
  const work = await tempDir(t, "vnbt-thin-");
  const set = join(work, "set");
  assertOk(await ourBackup(["-d", d.name, "-l", "full", "-o", set, "-n"]), "full");
  await d.writeRandom("sda", 2 * GiB, 8 * MiB, 73);
  await d.writeRandom("sda", 4 * MiB, 4 * MiB, 74); // overwrites data of the full: counted once
  assertOk(await ourBackup(["-d", d.name, "-l", "inc", "-o", set, "-n"]), "inc");
  const truth = (await captureTruth(d))["sda"];
  const data = (16 + 24 + 8 + 8) * MiB; // distinct bytes written, what a thin image must hold
  for (const engine of ["convert", "convert-nbd", "nbd-writes"]) {
    const out = join(work, engine);
    assertOk(await ourRestore(["-i", set, "-o", out, "-n"], { env: { ...process.env, VIRTNBD_RESTORE_ENGINE: engine } }), engine);
    const image = join(out, "sda.qcow2");
    assert.equal(await imageHash(image, "qcow2"), truth, `${engine}: bit-exact`);
    const allocated = (await stat(image)).blocks * 512;
    t.diagnostic(`${engine}: ${(allocated / MiB).toFixed(1)} MiB allocated for ${(data / MiB).toFixed(1)} MiB of data in a 4 GiB disk`);
    assert.ok(allocated <= data * 1.05 + 2 * MiB, `${engine}: ${allocated} bytes allocated for ${data} bytes of data`);
  }
});
