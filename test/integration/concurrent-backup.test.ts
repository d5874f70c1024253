/**
 * Three domains backed up at the same time by three virtnbdbackup processes (libvirtd pull-mode
 * jobs side by side: separate NBD sockets, scratch files, checkpoints): a full each (one with
 * lz4, one with two disks), new data, then an inc each, again all at once. Every set restores
 * bit-exact at both points, verifies, and no job is left on any domain.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import * as C from "../../src/libvirt/constants.js";
import { testDomain, MiB, type TestDomain } from "../helpers/domains.js";
import { assertOk, captureTruth, imageHash, ourBackup, ourRestore } from "../helpers/our-tool.js";
import { tempDir } from "../helpers/tmp.js";

test("three domains backed up concurrently (full, then inc): each set restores bit-exact at both points", async (t) => {
  const work = await tempDir(t, "vnbt-conc-");
  const domains: TestDomain[] = await Promise.all([
    testDomain(t, { disks: [{ size: 64 * MiB, content: [{ seed: 101, offset: 0, length: 40 * MiB }] }], start: true }),
    testDomain(t, { disks: [{ size: 64 * MiB, content: [{ seed: 102, offset: 8 * MiB, length: 40 * MiB }] }], start: true }),
    testDomain(t, { disks: [{ size: 48 * MiB, content: [{ seed: 103, offset: 0, length: 24 * MiB }] }, { size: 32 * MiB }], start: true }),
  ]);
  const extra = [["-n"], ["-n", "-z"], ["-n"]];
  const sets = domains.map((_, i) => join(work, `set${i}`));

  const backupAll = async (level: string) => {
    const started = Date.now();
    const results = await Promise.all(domains.map((d, i) => ourBackup(["-d", d.name, "-l", level, "-o", sets[i]!, ...extra[i]!])));
    results.forEach((r, i) => assertOk(r, `${level} of domain ${i}`));
    t.diagnostic(`three ${level} backups at once: ${Date.now() - started} ms`);
  };

  await backupAll("full");
  const truth0 = await Promise.all(domains.map((d) => captureTruth(d)));
  await Promise.all(
    domains.map(async (d, i) => {
      await d.writeRandom("sda", 4 * MiB * (i + 1), 6 * MiB, 110 + i);
      if (d.disks.length > 1) await d.writeRandom("sdb", MiB, 3 * MiB, 120 + i);
    }),
  );
  await backupAll("inc");
  const truth1 = await Promise.all(domains.map((d) => captureTruth(d)));
  for (const d of domains) assert.equal((await d.domain.jobInfo()).type, C.VIR_DOMAIN_JOB_NONE, `${d.name}: no job left`);

  for (const [i, d] of domains.entries()) {
    for (const [until, truth] of [["virtnbdbackup.0", truth0[i]!], [null, truth1[i]!]] as const) {
      const out = join(work, `out${i}-${until ?? "last"}`);
      assertOk(await ourRestore(["-i", sets[i]!, "-o", out, "-n", ...(until ? ["--until", until] : [])]), `restore of domain ${i} ${until ?? ""}`);
      for (const disk of d.disks) {
        assert.equal(await imageHash(join(out, `${disk.target}.qcow2`), "qcow2"), truth[disk.target], `domain ${i} ${disk.target} at ${until ?? "the inc"}`);
      }
    }
    assertOk(await ourRestore(["-i", sets[i]!, "-o", "verify", "-n"]), `verify of domain ${i}`);
  }
});
