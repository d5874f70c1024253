/**
 * virtnbdprune on real backups of a real domain (libvirtd, qemu, qemu-img): the kept chains
 * restore bit-exact; the libvirt checkpoints of a removed chain go only when they are its own
 * (the original's numbering reuses names in every monthly folder); a prune SIGKILLed after every
 * step leaves the kept chain restorable bit-exact and the next prune finishes; a prune racing a
 * running backup of the domain leaves its chains alone (exit 75).
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { cp, mkdtemp, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { testDomain, MiB, type TestDomain } from "../helpers/domains.js";
import { assertOk, captureTruth, imageHash, ourPrune, ourRestore, startOurBackup, startOurPrune, type ToolResult } from "../helpers/our-tool.js";
import { backup, URI, virsh } from "../helpers/heal.js";
import { tempDir } from "../helpers/tmp.js";

const ownCheckpoints = async (d: TestDomain): Promise<string[]> =>
  (await virsh("checkpoint-list", d.name, "--name")).split("\n").map((l) => l.trim()).filter((l) => l.startsWith("virtnbdbackup"));

/** With the default lock folder: the one the backups here use. */
async function prune(t: TestContext, args: string[], logDir: string, uri = URI): Promise<ToolResult> {
  const r = await ourPrune(["-U", uri, "-L", join(logDir, "prune.log"), ...args]);
  t.diagnostic(r.all);
  return r;
}

/** `set` (or the generation it means) restores to `truth` bit-exact. */
async function assertRestores(set: string, truth: Record<string, string>, what: string): Promise<void> {
  const out = await mkdtemp(join(tmpdir(), "vnbt-prune-restore-"));
  try {
    assertOk(await ourRestore(["-i", set, "-o", out, "-n"]), `restore of ${what}`);
    for (const [disk, hash] of Object.entries(truth)) assert.equal(await imageHash(join(out, `${disk}.qcow2`), "qcow2"), hash, `${disk} of ${what}`);
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}

interface Month {
  dir: string;
  truth: Record<string, string>;
}

/** A chain in `dir`: the levels in order, a change before each inc; the truth after the last. */
async function chain(d: TestDomain, dir: string, levels: string[], seed: number): Promise<Month> {
  for (const [i, level] of levels.entries()) {
    if (i > 0) await d.writePattern("sda", (seed + i) * MiB, MiB, 0x30 + seed + i);
    assertOk(await backup(d, dir, level), `${level} into ${dir}`);
  }
  return { dir, truth: await captureTruth(d) };
}

test("real chains: kept chains restore, only a removed chain's own checkpoints go, kills at every step, a running backup", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 32 * MiB }], start: true });
  const base = await tempDir(t, "vnbt-prune-live-");
  const months = join(base, d.name);
  const m1 = await chain(d, join(months, "2026-10"), ["full", "inc"], 1);
  await sleep(1100); // checkpoint creation times are in seconds
  const m2 = await chain(d, join(months, "2026-11"), ["full", "inc", "inc"], 4);
  const m2Checkpoints = await ownCheckpoints(d);
  assert.deepEqual(m2Checkpoints, ["virtnbdbackup.0", "virtnbdbackup.1", "virtnbdbackup.2"], "the full into a new folder numbers from 0 again");

  await t.test("SIGKILL after every step: the kept chain restores bit-exact, the next prune finishes", async (t) => {
    // A target with generations made of the two real chains: generation 1 goes file by file.
    const layout = join(base, "layout");
    await cp(m1.dir, layout, { recursive: true });
    await cp(m2.dir, join(layout, "generation.2"), { recursive: true });
    let step = 1;
    const seen = new Set<string>();
    for (;;) {
      const trial = join(base, `trial-${step}`);
      await cp(layout, trial, { recursive: true });
      // test:///default: no checkpoint of the live domain is looked at here
      const p = startOurPrune(["-U", "test:///default", "-L", join(trial, "p.log"), "-v", "--keep-last", "1", trial]);
      let steps = 0;
      p.child.stderr!.on("data", (chunk: Buffer) => {
        steps += (chunk.toString().match(/Prune step:/g) ?? []).length;
        if (steps >= step) p.child.kill("SIGKILL");
      });
      const r = await p.result;
      const state = (await readdir(trial)).sort().join(",");
      await assertRestores(trial, m2.truth, `the kept chain after a kill at step ${step}`);
      const finish = await prune(t, ["--keep-last", "1", trial], base, "test:///default");
      assert.equal(finish.exitCode, 0);
      assert.deepEqual((await readdir(trial)).filter((n) => n !== "p.log" && n !== "prune.log"), ["generation.2"], `after step ${step}`);
      await assertRestores(trial, m2.truth, `the kept chain after the prune that finished step ${step}'s`);
      await rm(trial, { recursive: true, force: true });
      seen.add(state);
      if (r.signal === null) break; // it ran to its end before the kill: every step was a kill point
      step++;
    }
    t.diagnostic(`${step} trials, ${seen.size} distinct states after the kill`);
    assert.ok(step >= 8 && seen.size >= 6, `kills landed at many steps (${step} trials, ${seen.size} states)`);
  });

  await t.test("a prune racing a running backup of the domain leaves its chains alone", async (t) => {
    const running = startOurBackup(["-d", d.name, "-l", "copy", "-o", join(months, "2026-12-copy"), "-n"]);
    await new Promise<void>((resolve) => {
      running.child.stderr!.on("data", (c: Buffer) => {
        if (c.toString().includes("Backup level:")) {
          running.child.kill("SIGSTOP");
          resolve();
        }
      });
    });
    try {
      const before = (await readdir(months)).sort();
      const r = await prune(t, ["--keep-last", "1", months], base);
      assert.equal(r.exitCode, 75);
      assert.match(r.stderr, new RegExp(`A backup of domain \\[${d.name}\\] is running \\(pid ${running.pid}, `));
      assert.deepEqual((await readdir(months)).sort(), before);
      assert.deepEqual(await ownCheckpoints(d), m2Checkpoints);
    } finally {
      running.child.kill("SIGCONT");
    }
    assertOk(await running.result, "the backup that ran beside the prune");
    await rm(join(months, "2026-12-copy"), { recursive: true, force: true });
  });

  await t.test("removing 2026-10 leaves libvirt's virtnbdbackup.0-.2: same names, but 2026-11's", async (t) => {
    const r = await prune(t, ["--keep-last", "1", months], base);
    assert.equal(r.exitCode, 0);
    assert.deepEqual(await readdir(months), ["2026-11"]);
    assert.match(r.stderr, /Checkpoint \[virtnbdbackup\.0\] of domain \[.*\] is not the one \[.*2026-10\] saved: left\./);
    assert.deepEqual(await ownCheckpoints(d), m2Checkpoints);
    await assertRestores(m2.dir, m2.truth, "2026-11");
    // the kept chain goes on
    await d.writePattern("sda", 20 * MiB, MiB, 0x77);
    assertOk(await backup(d, m2.dir, "inc"), "inc after the prune");
    await assertRestores(m2.dir, await captureTruth(d), "2026-11 after one more inc");
  });

  await t.test("removing 2026-11 after a newer copy: its own checkpoints go with it", async (t) => {
    const m3 = await chain(d, join(months, "2026-12"), ["copy"], 9);
    const r = await prune(t, ["--keep-last", "1", months], base);
    assert.equal(r.exitCode, 0);
    assert.deepEqual(await readdir(months), ["2026-12"]);
    assert.deepEqual(await ownCheckpoints(d), [], "2026-11's checkpoints (created when it saved them) are removed");
    assert.match(r.stderr, /Removed checkpoint \[virtnbdbackup\.3\]/);
    await assertRestores(m3.dir, m3.truth, "2026-12");
  });
});
