/**
 * The randomized kill run: VNBT_CRASH_TRIALS trials (default 40) of our virtnbdbackup on a real
 * domain, each with a random level (full/inc/diff), signal (SIGKILL/SIGTERM), compression, and
 * moment (a random phase line plus a random delay, or a random time from the start). The
 * invariants and the recovery are those of crash-kill.test.ts (test/helpers/crash-trials.ts).
 * VNBT_CRASH_SEED reproduces a run (printed as a diagnostic).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { testDomain, MiB } from "../helpers/domains.js";
import { CrashHarness, ourTool, PHASES, rng, summarize, type Level, type TrialResult } from "../helpers/crash-trials.js";
import { tempDir } from "../helpers/tmp.js";

const trials = Number(process.env["VNBT_CRASH_TRIALS"] ?? 40);
const seed = Number(process.env["VNBT_CRASH_SEED"] ?? Date.now() % 100000);


test(`${trials} randomized kill trials: no job left after SIGTERM, no final-named file restores wrong, recovery restores bit-exact`, { timeout: trials * 30_000 + 120_000 }, async (t) => {
  const random = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  t.diagnostic(`VNBT_CRASH_SEED=${seed}`);
  const d = await testDomain(t, { disks: [{ size: 128 * MiB, content: [{ seed: 43, offset: 0, length: 128 * MiB }] }], start: true });
  const work = await tempDir(t, "vnbt-crash-slow-");
  const h = new CrashHarness(d, work, ourTool(), (m) => t.diagnostic(m));
  const phases = Object.values(PHASES);
  const results: TrialResult[] = [];
  for (let i = 0; i < trials; i++) {
    const phase = pick(phases);
    const level: Level = pick(["full", "inc", "inc", "diff"] as const);
    results.push(await h.trial({ level, signal: pick(["SIGKILL", "SIGTERM"] as const), phase, delayMs: Math.floor(random() * (phase.maxDelayMs + 1)), compress: random() < 0.4 }));
  }
  const lines = summarize(results);
  for (const l of lines) t.diagnostic(l);
  const failed = results.filter((r) => r.problems.length > 0 || r.loud.length > 0);
  assert.deepEqual(failed.map((r) => [...r.problems, ...r.loud]), [], lines.join("\n"));
});
