/**
 * Disk full during a backup (a small tmpfs as the target, libvirtd, a running TCG domain):
 *
 *   - a full into tmpfs of several sizes (far too small, a few MiB short, just short of the
 *     data file plus its side files, big enough);
 *   - an inc into a set on a tmpfs that is filled up to leave N bytes free, N swept in 4 KiB steps
 *     around the size of the inc's data file, so the run fails in every phase: the run marker,
 *     `.cpt`, checkpoint XML, mid-data, `.integrity`/`.chksum` after the data file got its final
 *     name, vmconfig, qcow.json.
 *
 * Each run: exit 0 with a set that restores bit-exact, or exit 1 with an ERROR naming the
 * failure (no stack trace) — and then the next inc into that set refuses (run marker or
 * `.partial`) unless nothing changed, no data file under its final name restores wrong, the
 * earlier state restores bit-exact, and no libvirt job is left.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, readdir, rm, stat, statfs } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import * as C from "../../src/libvirt/constants.js";
import { testDomain, MiB, type TestDomain } from "../helpers/domains.js";
import { captureTruth, imageHash, logLines, ourBackup, ourRestore, type ToolResult } from "../helpers/our-tool.js";
import { REFUSALS } from "../helpers/crash-trials.js";
import { tempDir } from "../helpers/tmp.js";

const execFileP = promisify(execFile);
const KiB = 1024;

async function mountTmpfs(dir: string, size: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await execFileP("mount", ["-t", "tmpfs", "-o", `size=${size}`, "vnbt-crash-tmpfs", dir]);
}

async function umount(dir: string): Promise<void> {
  await execFileP("umount", [dir]).catch(() => undefined);
}

async function free(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

/** Leaves `bytes` free on the file system of `dir` (a preallocated filler file). */
async function leaveFree(dir: string, bytes: number): Promise<string> {
  const filler = join(dir, "filler");
  await rm(filler, { force: true });
  const n = (await free(dir)) - bytes;
  if (n > 0) await execFileP("fallocate", ["-l", String(n), filler]);
  return filler;
}

/** Which phase the failure hit, from the log (in run order). */
function failedPhase(r: ToolResult): string {
  const errors = logLines(r, "ERROR").join("\n");
  if (/run marker/.test(errors)) return "run marker";
  if (/checkpoint information/.test(errors)) return ".cpt / checkpoint XML";
  if (/Disk backup failed.*\.(integrity|chksum)/.test(errors)) return ".integrity/.chksum";
  if (/Disk backup failed/.test(errors)) return "data";
  if (/Failed to save VM config/.test(errors)) return "vmconfig";
  if (/boot file/.test(errors)) return "boot files";
  if (/qcow image config/.test(errors)) return "qcow.json";
  if (/autostart|osinfo/.test(errors)) return "other side files";
  return `other: ${errors.slice(0, 300)}`;
}

async function noJob(d: TestDomain): Promise<void> {
  assert.equal((await d.domain.jobInfo()).type, C.VIR_DOMAIN_JOB_NONE, "no backup job left");
}

/** exit 1 with an ERROR line and no stack trace. */
function cleanFailure(r: ToolResult, label: string): void {
  assert.equal(r.exitCode, 1, `${label}: exit code\n${r.all}`);
  assert.ok(logLines(r, "ERROR").length > 0, `${label}: an ERROR line\n${r.all}`);
  assert.doesNotMatch(r.all, /Unexpected error|\n\s+at .*\(.*:\d+:\d+\)/, `${label}: no stack trace\n${r.all}`);
}

test("disk full: a full into tmpfs of several sizes, an inc into a set with N bytes left (every phase): exit 1 and the next inc refuses, or exit 0 and bit-exact", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 64 * MiB, content: [{ seed: 61, offset: 0, length: 12 * MiB }] }], start: true });
  const work = await tempDir(t, "vnbt-dfull-");
  const mnt = join(work, "mnt");
  t.after(() => umount(mnt));
  const phases = new Map<string, number>();
  let n = 0;

  /**
   * A failed or successful run's aftermath in `set` (restored to `work`, outside the tmpfs):
   * `dataFile` is the run's data file; a plain restore gives `truth` when it exists under its
   * final name, else the earlier state.
   */
  const check = async (r: ToolResult, set: string, label: string, dataFile: string, truth: string, earlier: { until: string; hash: string } | null) => {
    await noJob(d);
    const out = join(work, `out${n++}`);
    const plain = await ourRestore(["-i", set, "-o", out, "-n"]);
    const complete = !!(await stat(join(set, dataFile)).catch(() => null));
    const want = complete ? truth : earlier?.hash;
    if (plain.exitCode === 0) assert.equal(await imageHash(join(out, "sda.qcow2"), "qcow2"), want, `${label}: restore exit 0 must be bit-exact (data file ${complete ? "complete" : "missing"})\n${plain.all}`);
    else assert.ok(!(await stat(join(out, "sda.qcow2")).catch(() => null)), `${label}: failed restore leaves no image`);
    if (r.exitCode === 0) assert.equal(plain.exitCode, 0, `${label}: a successful run restores\n${plain.all}`);
    if (earlier) {
      const o = join(work, `out${n++}`);
      const until = await ourRestore(["-i", set, "-o", o, "-n", "--until", earlier.until]);
      assert.equal(until.exitCode, 0, `${label}: --until ${earlier.until}\n${until.all}`);
      assert.equal(await imageHash(join(o, "sda.qcow2"), "qcow2"), earlier.hash, `${label}: earlier state bit-exact`);
    }
    if (r.exitCode !== 0) {
      const phase = failedPhase(r);
      phases.set(phase, (phases.get(phase) ?? 0) + 1);
      // The next inc into this set (space freed) refuses, unless the run failed before changing anything.
      await rm(join(set, "..", "filler"), { force: true });
      const names = await readdir(set);
      const inc = await ourBackup(["-d", d.name, "-l", "inc", "-o", set, "-n"]);
      if (phase === "run marker") {
        // Nothing changed: the run stopped before its marker existed; the set goes on.
        assert.equal(inc.exitCode, 0, `${label}: an inc after a run that changed nothing\n${inc.all}`);
        const o = join(work, `out${n++}`);
        assert.equal((await ourRestore(["-i", set, "-o", o, "-n"])).exitCode, 0);
        assert.equal(await imageHash(join(o, "sda.qcow2"), "qcow2"), (await captureTruth(d))["sda"], `${label}: the set after the next inc`);
        return "inc accepted, bit-exact";
      }
      assert.equal(inc.exitCode, 1, `${label} (${phase}): the next inc must refuse; files: ${names.join(" ")}\n${inc.all}`);
      assert.match(inc.stderr, REFUSALS, `${label}: a known refusal`);
      await noJob(d);
      return "inc refused";
    }
    return "ok";
  };

  // 1. Full backups into tmpfs of several sizes (the full is ~12 MiB of data).
  for (const size of ["2m", "12m", "12400k", "13m"]) {
    await mountTmpfs(mnt, size);
    try {
      const set = join(mnt, "set");
      const before = await captureTruth(d);
      const r = await ourBackup(["-d", d.name, "-l", "full", "-o", set, "-n"]);
      if (r.exitCode !== 0) cleanFailure(r, `full into ${size}`);
      const outcome = await check(r, set, `full into ${size}`, "sda.full.data", before["sda"]!, null);
      t.diagnostic(`full into tmpfs ${size}: exit ${r.exitCode}${r.exitCode ? ` (${failedPhase(r)})` : ""}, ${outcome}`);
    } finally {
      await umount(mnt);
    }
  }

  // 2. An inc of ~4 MiB into a set with N bytes left, N swept around the data file's size.
  const incData = 4 * MiB;
  const spare = [0, 4 * KiB, 8 * KiB, 12 * KiB, 2 * MiB];
  for (let k = -1; k <= 9; k++) spare.push(incData + k * 4 * KiB);
  spare.push(incData + 64 * KiB);
  await mountTmpfs(mnt, "64m");
  try {
    for (const bytes of spare) {
      const set = join(mnt, "set");
      await rm(set, { recursive: true, force: true });
      await rm(join(mnt, "filler"), { force: true });
      const full = await ourBackup(["-d", d.name, "-l", "full", "-o", set, "-n"]);
      assert.equal(full.exitCode, 0, full.all);
      const truth0 = (await captureTruth(d))["sda"]!;
      await d.writeRandom("sda", 20 * MiB + (n % 8) * MiB, incData, 6100 + n);
      const truth1 = (await captureTruth(d))["sda"]!;
      await leaveFree(mnt, bytes);
      const r = await ourBackup(["-d", d.name, "-l", "inc", "-o", set, "-n"]);
      const label = `inc with ${bytes} bytes free`;
      if (r.exitCode !== 0) cleanFailure(r, label);
      const outcome = await check(r, set, label, "sda.inc.virtnbdbackup.1.data", truth1, { until: "virtnbdbackup.0", hash: truth0 });
      t.diagnostic(`${label}: exit ${r.exitCode}${r.exitCode ? ` (${failedPhase(r)})` : ""}, ${outcome}`);
    }
  } finally {
    await umount(mnt);
  }
  t.diagnostic(`failed phases: ${[...phases].map(([p, c]) => `${p} ×${c}`).join(", ")}`);
  for (const p of ["run marker", ".cpt / checkpoint XML", "data", ".integrity/.chksum", "vmconfig"]) assert.ok(phases.has(p), `the sweep hit the ${p} phase: ${[...phases.keys()].join(", ")}`);
});
