/**
 * Checkpoint drift that needs libvirtd alone (docs/behaviour.md, "Checkpoint drift"): a backup
 * client SIGKILLed mid-job (libvirt 9.0 was seen to hang after that: this file runs alone after
 * a fresh libvirtd, scripts/run-tests.js FRESH_LIBVIRTD), the per-domain lock, and libvirtd
 * restarted between runs.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { DomainLock, lockDirectory } from "../../src/connect/domain-lock.js";
import { testDomain, MiB } from "../helpers/domains.js";
import { autoPoint, backup, restoresEveryPoint, URI, warnings, type Point } from "../helpers/heal.js";
import { ROOT, startOurBackup } from "../helpers/our-tool.js";
import { tempDir } from "../helpers/tmp.js";

test("a SIGKILLed run: while its owner lives the next exits 75 and changes nothing; after, auto aborts its job and continues safely", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 32 * MiB }], start: true });
  const work = await tempDir(t, "vnbt-heal-lock-");
  const set = join(work, "set");
  const points: Point[] = [await autoPoint(d, set, "full")];

  // The lock held by another process: exit 75, nothing written.
  const before = (await readdir(set)).sort();
  const holder = await DomainLock.acquire(lockDirectory(), URI, d.name, { pid: 4242, started: "then", output: "/elsewhere" });
  assert.ok(holder instanceof DomainLock);
  try {
    const busy = await backup(d, set, "auto");
    assert.equal(busy.exitCode, 75, busy.stderr);
    assert.match(busy.stderr, new RegExp(`Another backup of domain \\[${d.name}\\] is running \\(pid 4242`));
    assert.deepEqual((await readdir(set)).sort(), before, "a refused run changes nothing");
  } finally {
    await holder.release();
  }

  // 9: SIGKILL once the checkpoint exists (the job and the run marker are left).
  await d.writeRandom("sda", 4 * MiB, 4 * MiB, 21);
  const victim = startOurBackup(["-d", d.name, "-l", "auto", "-o", set, "-v"]);
  await waitForOutput(victim, /Started backup job with checkpoint, saving information|Saving checkpoint config/);
  process.kill(victim.pid, "SIGKILL");
  await victim.result;
  assert.ok(existsSync(join(set, `${d.name}.run.partial`)), "the run marker is left");
  await d.writeRandom("sda", 10 * MiB, MiB, 22);
  const healed = await autoPoint(d, set, "auto after a SIGKILLed run");
  const w = warnings(healed.run);
  assert.equal(w.length, 1, healed.run.stderr);
  assert.match(w[0]!, /Previous backup run into .* did not finish \(pid \d+, level inc/);
  assert.match(healed.run.stderr, /Aborted the backup job left by pid \d+/);
  assert.match(healed.run.stderr, /Dropped checkpoint \[virtnbdbackup\.1\] of the unfinished run/);
  assert.equal(healed.checkpoint, "virtnbdbackup.1", "the dead run's checkpoint is dropped and made again");
  points.push(healed);
  await d.writeRandom("sda", 20 * MiB, MiB, 23);
  points.push(await autoPoint(d, set, "next inc"));
  await restoresEveryPoint(work, set, points);
});

async function waitForOutput(run: ReturnType<typeof startOurBackup>, re: RegExp): Promise<void> {
  let seen = "";
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timeout waiting for ${re}:\n${seen}`)), 60_000);
    const onData = (chunk: Buffer) => {
      seen += chunk.toString();
      if (re.test(seen)) {
        clearTimeout(timer);
        resolve();
      }
    };
    run.child.stderr!.on("data", onData);
    run.result.then(() => reject(new Error(`ended before ${re}:\n${seen}`)), reject);
  });
}


test("libvirtd restarted between runs: auto continues the chain", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 32 * MiB }], start: true });
  const work = await tempDir(t, "vnbt-heal-restart-");
  const set = join(work, "set");
  const points: Point[] = [await autoPoint(d, set, "full")];
  await d.writeRandom("sda", 2 * MiB, MiB, 41);
  const restart = spawnSync(process.execPath, [join(ROOT, "scripts/fresh-libvirtd.js")], { stdio: "inherit" });
  if (restart.status === 3) return t.skip("libvirtd cannot be restarted here (not root, or not a plain daemon)");
  assert.equal(restart.status, 0, "libvirtd restarted");
  await d.reconnect();
  assert.ok(await d.isRunning(), "the domain kept running");
  const next = await autoPoint(d, set, "auto after a libvirtd restart");
  assert.deepEqual(warnings(next.run), []);
  assert.equal(next.checkpoint, "virtnbdbackup.1");
  points.push(next);
  await restoresEveryPoint(work, set, points);
});
