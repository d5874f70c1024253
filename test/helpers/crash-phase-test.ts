/**
 * The phase-by-phase kill test (crash-kill.test.ts: SIGKILL, crash-term.test.ts: SIGTERM); see
 * crash-kill.test.ts for what each trial checks. VNBT_CRASH_SEED fixes the random delays.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { testDomain, MiB } from "./domains.js";
import { CrashHarness, ourTool, PHASES, rng, summarize, type Level, type Phase, type TrialResult, type TrialSpec } from "./crash-trials.js";
import { tempDir } from "./tmp.js";

const seed = Number(process.env["VNBT_CRASH_SEED"] ?? Date.now() % 100000);

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

/** Registers the phase-by-phase kill test for one signal (one file per signal: a fresh libvirtd each). */
export function phaseTrialsTest(signal: "SIGKILL" | "SIGTERM"): void {
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
