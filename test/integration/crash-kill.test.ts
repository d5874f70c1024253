/**
 * Kill trials against our virtnbdbackup on a real domain (64 MiB of random data, libvirtd
 * pull-mode jobs): SIGKILL and SIGTERM at every phase of a run — before libvirt, before the
 * run marker, during checkpoint handling, while the job starts, right after the checkpoint is
 * created (before `.cpt`), before the first `.partial`, mid-transfer, while `.chksum` is
 * written, while the job ends, during vmconfig and qcow.json, and after "Finished" — with
 * full, inc and diff levels (some lz4) and random delays after the phase line.
 *
 * After each kill (test/helpers/crash-trials.ts): SIGTERM exits 1 within seconds with no job
 * left; a job left by SIGKILL is reported by the next run with the exact command, and that
 * command clears it; no data file under its final name restores wrong (a plain restore exits 1
 * or is bit-exact, the earlier state restores bit-exact with --until); the next inc into the
 * set is either refused with a known message and a new full restores bit-exact, or accepted
 * and the set restores bit-exact (new data written in between, so a lost change would show).
 *
 * VNBT_CRASH_SEED fixes the random delays (the seed is printed as a diagnostic).
 * A bigger randomized run: crash-kill.slow.test.ts.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { testDomain, MiB } from "../helpers/domains.js";
import { CrashHarness, ourTool, PHASES, summarize, type Level, type Phase, type TrialResult, type TrialSpec } from "../helpers/crash-trials.js";
import { tempDir } from "../helpers/tmp.js";

const seed = Number(process.env["VNBT_CRASH_SEED"] ?? Date.now() % 100000);

/** Small deterministic generator (mulberry32) for delays and choices. */
function rng(s: number): () => number {
  let a = s >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Phase × level pairs: every phase, and the dangerous windows of an inc (checkpoint made, no data yet) twice. */
const PLAN: [Phase, Level][] = [
  [PHASES.start, "full"],
  [PHASES.beforeMarker, "inc"],
  [PHASES.checkpointHandling, "full"],
  [PHASES.jobStarting, "inc"],
  [PHASES.checkpointCreated, "inc"],
  [PHASES.checkpointCreated, "full"],
  [PHASES.beforeFirstPartial, "inc"],
  [PHASES.beforeFirstPartial, "diff"],
  [PHASES.transfer, "full"],
  [PHASES.transfer, "inc"],
  [PHASES.transfer, "diff"],
  [PHASES.checksum, "inc"],
  [PHASES.jobEnding, "diff"],
  [PHASES.vmconfig, "inc"],
  [PHASES.qcowJson, "full"],
  [PHASES.finished, "inc"],
];

for (const signal of ["SIGKILL", "SIGTERM"] as const) {
  test(`${signal} at every phase of full/inc/diff runs: no job left after SIGTERM, no final-named file restores wrong, recovery restores bit-exact`, async (t) => {
    const random = rng(seed + (signal === "SIGKILL" ? 0 : 1));
    t.diagnostic(`VNBT_CRASH_SEED=${seed}`);
    const d = await testDomain(t, { disks: [{ size: 64 * MiB, content: [{ seed: 41, offset: 0, length: 64 * MiB }] }], start: true });
    const work = await tempDir(t, "vnbt-crash-");
    const h = new CrashHarness(d, work, ourTool(), (m) => t.diagnostic(m));
    const results: TrialResult[] = [];
    for (const [phase, level] of PLAN) {
      const spec: TrialSpec = { level, signal, phase, delayMs: Math.floor(random() * (phase.maxDelayMs + 1)), compress: random() < 0.35 };
      results.push(await h.trial(spec));
    }
    const lines = summarize(results);
    for (const l of lines) t.diagnostic(l);
    const failed = results.filter((r) => r.problems.length > 0 || r.loud.length > 0);
    assert.deepEqual(failed.map((r) => [...r.problems, ...r.loud]), [], lines.join("\n"));
    assert.ok(results.filter((r) => r.killed).length >= results.length - 3, `most trials were killed before the end:\n${lines.join("\n")}`);
  });
}
