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
 * This file: SIGKILL; crash-term.test.ts: SIGTERM (separate files: each starts with a fresh
 * libvirtd, see scripts/run-tests.js). A bigger randomized run: crash-kill.slow.test.ts.
 */
import { phaseTrialsTest } from "../helpers/crash-phase-test.js";

phaseTrialsTest("SIGKILL");
