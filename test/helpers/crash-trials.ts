/**
 * Kill trials for crash-safety tests: a backup run of a real domain is killed (SIGKILL or
 * SIGTERM) at a moment picked from its log stream (a phase line plus a random delay), then the
 * invariants are checked and the documented recovery is run:
 *
 *   - SIGTERM: exit ≠ 0 within seconds, no libvirt job left;
 *   - SIGKILL with a job left: the next run reports it with the exact command to clear it, and
 *     that command (`-k`) clears it;
 *   - no data file under its final name restores wrong: a plain restore of the set exits 1 or is
 *     bit-exact (the run's state if its data file is complete, else the previous state), and the
 *     earlier state still restores bit-exact (`--until`);
 *   - recovery: new data is written, then an inc into the same set; if that is refused (with a
 *     known message) a full into a fresh directory; the result restores bit-exact.
 *
 *   const h = new CrashHarness(domain, workDir, ourTool());
 *   const r = await h.trial({ level: "inc", signal: "SIGKILL", phase: PHASES.transfer, delayMs: 120, compress: false });
 *   r.problems  // [] when the trial survived
 *
 * The tool is pluggable so the same trials can be run against the original (outside the suite).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, rm, stat } from "node:fs/promises";
import { readdir, readFile } from "../../src/storage/files.js";
import { join } from "node:path";
import * as C from "../../src/libvirt/constants.js";
import type { TestDomain } from "./domains.js";
import { MiB } from "./domains.js";
import { ensureBuilt, imageHash, OUR_BACKUP, OUR_RESTORE } from "./our-tool.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const STUCK_MS = 90_000;

export interface RunResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  output: string;
}

export interface RunningProcess {
  child: ChildProcess;
  /** Called with every complete output line (stdout and stderr). */
  onLine(fn: (line: string) => void): void;
  result: Promise<RunResult>;
}

/** How to run a tool's backup and restore (ours, or the original for comparison runs). */
export interface BackupTool {
  name: string;
  backup(args: string[], cwd?: string): RunningProcess;
  restore(args: string[]): RunningProcess;
}

export function spawnTool(cmd: string, args: string[], env?: NodeJS.ProcessEnv, cwd?: string): RunningProcess {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], env: env ?? process.env, cwd });
  let output = "";
  const listeners: ((l: string) => void)[] = [];
  const partial = { out: "", err: "" };
  const feed = (key: "out" | "err") => (chunk: Buffer) => {
    const text = chunk.toString();
    output += text;
    const lines = (partial[key] + text).split("\n");
    partial[key] = lines.pop()!;
    for (const l of lines) for (const fn of listeners) fn(l);
  };
  child.stdout!.on("data", feed("out"));
  child.stderr!.on("data", feed("err"));
  const result = new Promise<RunResult>((resolve) =>
    child.on("close", (code, signal) => resolve({ exitCode: code, signal, output })),
  );
  // A tool run on a 64 MiB disk takes seconds: a stuck one is killed (and shows as a failed trial)
  // well before the test file's time is up.
  const timer = setTimeout(() => {
    output += `\n[test harness: no exit after ${STUCK_MS / 1000} s, killed with SIGKILL]\n`;
    child.kill("SIGKILL");
  }, STUCK_MS);
  void result.finally(() => clearTimeout(timer));
  return { child, onLine: (fn) => listeners.push(fn), result };
}

/** Our bins (built dist/). */
export function ourTool(env: NodeJS.ProcessEnv = process.env): BackupTool {
  ensureBuilt();
  return {
    name: "ours",
    backup: (args, cwd) => spawnTool(process.execPath, [OUR_BACKUP, "--nocolor", ...args], env, cwd),
    restore: (args) => spawnTool(process.execPath, [OUR_RESTORE, "--nocolor", ...args], env),
  };
}

export async function runToEnd(p: RunningProcess): Promise<RunResult> {
  return p.result;
}

export interface Phase {
  name: string;
  /** The log line after which the kill is sent (null: counted from the start). */
  line: RegExp | null;
  /** Random delay after the line, 0…maxDelayMs. */
  maxDelayMs: number;
}

/** Moments of a run, in order, recognised from the log stream (ours and the original's wording). */
export const PHASES = {
  start: { name: "start (before libvirt)", line: /Backup level: \[/, maxDelayMs: 30 },
  beforeMarker: { name: "before checkpoint handling", line: /Concurrent backup processes: \[/, maxDelayMs: 20 },
  checkpointHandling: { name: "checkpoint handling", line: /Checkpoint handling\.|Removing all existent checkpoints|Loaded checkpoint list/, maxDelayMs: 20 },
  jobStarting: { name: "job starting", line: /Starting backup job\./, maxDelayMs: 60 },
  checkpointCreated: { name: "checkpoint created, before .cpt", line: /Started backup job with checkpoint/, maxDelayMs: 5 },
  beforeFirstPartial: { name: "before the first .partial (NBD connect)", line: /Waiting until NBD server at|Saving checkpoint config to/, maxDelayMs: 15 },
  transfer: { name: "mid-transfer", line: /Write data to target file|Writing data to zip archive/, maxDelayMs: 250 },
  checksum: { name: "data renamed, writing .chksum", line: /Saving checksum to:/, maxDelayMs: 5 },
  jobEnding: { name: "stopping the job", line: /Backup jobs finished, stopping backup task/, maxDelayMs: 10 },
  vmconfig: { name: "metadata: vmconfig", line: /Saving VM config to:/, maxDelayMs: 10 },
  qcowJson: { name: "metadata: qcow.json", line: /Saved qcow image config to:/, maxDelayMs: 5 },
  finished: { name: "finished, before the marker is cleared", line: /Finished successfully/, maxDelayMs: 3 },
  random: { name: "random time from start", line: null, maxDelayMs: 3000 },
} satisfies Record<string, Phase>;

export type Level = "full" | "inc" | "diff";

export interface TrialSpec {
  level: Level;
  signal: "SIGKILL" | "SIGTERM";
  phase: Phase;
  /** Delay after the phase line (ms). */
  delayMs: number;
  compress: boolean;
}

export interface TrialResult {
  spec: TrialSpec;
  /** The signal was sent before the run ended. */
  killed: boolean;
  /** The last phase line seen before the signal. */
  lastPhase: string;
  exitCode: number | null;
  /** ms from signal to exit. */
  exitMs: number | null;
  jobLeft: boolean;
  /** What the recovery was: "inc accepted", "inc refused → new full". */
  recovery: string;
  /** Silent damage or a broken promise (exit 0 with a wrong image, job left after SIGTERM, …). */
  problems: string[];
  /** Failures that are loud but not the expected refusal (fine for the original, not for ours). */
  loud: string[];
  notes: string[];
}

interface GoodSet {
  dir: string;
  /** Checkpoint (or "diff") → disk hash at that point. */
  truths: Map<string, string>;
  /** Last checkpoint the set holds. */
  last: string;
  /** The disk state the set restores to without --until. */
  latest: string;
}

/** Refusals that make an inc into an unfinished set safe (ours and the original's wording). */
export const REFUSALS = /Partial backup found|Unfinished backup run found|is listed in .* but its data file .* is missing|Active block job|No full backup found|does not contain full backup/;

export class CrashHarness {
  private set: GoodSet | null = null;
  private n = 0;
  private seed = 5000;

  constructor(
    readonly d: TestDomain,
    readonly work: string,
    readonly tool: BackupTool,
    private readonly log: (m: string) => void = () => undefined,
    /** Where the sets go: `work` (restores always go there), or an `s3://` prefix. */
    readonly setsIn: string = work,
  ) {}

  private fresh(prefix: string, under = this.work): string {
    return join(under, `${prefix}${this.n++}`);
  }

  /** New random data somewhere on the disk (what an inc after it must carry). */
  private async change(): Promise<void> {
    const size = this.d.disk("sda").size;
    const len = (4 + (this.seed % 4) * 4) * MiB;
    const offset = ((this.seed * 7) % ((size - len) / MiB)) * MiB;
    await this.d.writeRandom("sda", offset, len, this.seed++);
  }

  private truth(): Promise<string> {
    return this.d.diskHash("sda");
  }

  /** libvirt may answer "backup job data missing" while a job winds down: asked again then. */
  private async jobLeft(): Promise<boolean> {
    for (let i = 0; ; i++) {
      try {
        return (await this.d.domain.jobInfo()).type !== C.VIR_DOMAIN_JOB_NONE;
      } catch (e) {
        if (i >= 20) throw e;
        await sleep(100);
      }
    }
  }

  private backupArgs(level: Level | "full", dir: string, compress: boolean): string[] {
    return ["-d", this.d.name, "-l", level, "-o", dir, "-n", ...(compress ? ["-z"] : [])];
  }

  /** Restores `dir` (optionally --until) and returns exit code and image hash. */
  async restore(dir: string, until?: string): Promise<{ exitCode: number | null; hash: string | null; output: string }> {
    const out = this.fresh("restore");
    const r = await this.tool.restore(["-i", dir, "-o", out, "-n", ...(until ? ["--until", until] : [])]).result;
    let hash: string | null = null;
    const image = join(out, "sda.qcow2");
    if (await stat(image).catch(() => null)) hash = await imageHash(image, "qcow2");
    await rm(out, { recursive: true, force: true });
    return { exitCode: r.exitCode, hash, output: r.output };
  }

  /** A complete full backup into a fresh directory, restorable: the base for inc/diff trials. */
  async newFull(): Promise<GoodSet> {
    const dir = this.fresh("set", this.setsIn);
    const r = await this.tool.backup(this.backupArgs("full", dir, false)).result;
    if (r.exitCode !== 0) throw new Error(`full backup failed (${r.exitCode}):\n${r.output}`);
    const t = await this.truth();
    this.set = { dir, truths: new Map([["virtnbdbackup.0", t]]), last: "virtnbdbackup.0", latest: t };
    return this.set;
  }

  private async ensureSet(): Promise<GoodSet> {
    return this.set ?? (await this.newFull());
  }

  /** Clears a job a killed run left behind the way the next run tells us to. */
  private async clearLeftoverJob(dir: string, r: TrialResult): Promise<void> {
    // A run killed right after it asked libvirt to end the job ("stopping the job") leaves a job
    // that is already ending: it goes within a moment, and the next run rightly sees none. A job
    // nobody ends stays.
    for (let i = 0; i < 10 && (await this.jobLeft()); i++) await sleep(100);
    if (!(await this.jobLeft())) {
      r.notes.push("the job ended by itself (it was being stopped when the run was killed)");
      return;
    }
    const next = await this.tool.backup(this.backupArgs("inc", dir, false)).result;
    if (next.exitCode === 0) r.problems.push("an inc was accepted while the killed run's job was still running");
    const hint = /stop it with \[(virtnbdbackup [^\]]+)\]/.exec(next.output);
    if (this.tool.name === "ours" && !hint) r.problems.push(`the next run did not report the leftover job with the command to clear it:\n${next.output}`);
    if (!/Active block job|domjobabort|still active/.test(next.output)) r.notes.push("next run did not mention the leftover job");
    // Ours: run the command exactly as printed; the original: its documented -k.
    const args = hint ? hint[1]!.split(" ").slice(1) : ["-d", this.d.name, "-o", dir, "-k"];
    const k = await this.tool.backup(args).result;
    if (k.exitCode !== 0) r.problems.push(`-k failed (${k.exitCode}):\n${k.output}`);
    for (let i = 0; i < 50 && (await this.jobLeft()); i++) await sleep(100);
    if (await this.jobLeft()) r.problems.push("-k did not clear the leftover job");
  }

  async trial(spec: TrialSpec): Promise<TrialResult> {
    // Progress on stderr at once: if the file's time runs out, the last trial begun is visible.
    console.error(`crash trial: ${spec.signal} ${spec.level}${spec.compress ? " -z" : ""} at ${spec.phase.name} +${spec.delayMs}ms`);
    const r: TrialResult = { spec, killed: false, lastPhase: "-", exitCode: null, exitMs: null, jobLeft: false, recovery: "", problems: [], loud: [], notes: [] };
    const base = spec.level === "full" ? null : await this.ensureSet();
    const dir = base ? base.dir : this.fresh("full", this.setsIn);
    await this.change();
    const before = await this.truth();
    const namesBefore = new Set(await readdir(dir).catch(() => [] as string[]));

    // The run, killed at the chosen moment.
    const phases = Object.values(PHASES).filter((p) => p.line);
    const p = this.tool.backup(this.backupArgs(spec.level, dir, spec.compress));
    let ended = false;
    let sentAt = 0;
    const fire = () => {
      if (ended || sentAt) return;
      sentAt = Date.now();
      r.killed = true;
      p.child.kill(spec.signal);
    };
    p.onLine((line) => {
      const seen = phases.find((ph) => ph.line!.test(line));
      if (seen && !sentAt) r.lastPhase = seen.name;
      if (spec.phase.line && spec.phase.line.test(line) && !sentAt) setTimeout(fire, spec.delayMs);
    });
    if (!spec.phase.line) setTimeout(fire, spec.delayMs);
    const res = await p.result;
    ended = true;
    r.exitCode = res.exitCode;
    r.exitMs = sentAt ? Date.now() - sentAt : null;
    // A run that has just exited can still be signalled (a zombie not reaped yet): exit 0 with
    // no "Signal caught" line means the signal never reached a live process (a live one logs
    // that line and exits 1, or dies of the signal once its handlers are gone).
    if (r.killed && spec.signal === "SIGTERM" && res.exitCode === 0 && !/Signal caught/.test(res.output)) r.killed = false;
    if (!r.killed) r.notes.push("run ended before the signal");

    // Signal handling.
    r.jobLeft = await this.jobLeft();
    if (r.killed && spec.signal === "SIGTERM") {
      if (res.exitCode === 0) r.problems.push("SIGTERM: exit 0");
      if (r.exitMs! > 10_000) r.problems.push(`SIGTERM: exit after ${r.exitMs} ms`);
      if (r.jobLeft) r.problems.push("SIGTERM: libvirt backup job left running");
    }
    if (!r.killed && res.exitCode !== 0) r.problems.push(`the run failed without a signal (${res.exitCode}):\n${res.output}`);
    if (r.jobLeft) await this.clearLeftoverJob(dir, r);

    // No data file under its final name restores wrong; earlier states stay restorable.
    const runFile = (await readdir(dir).catch(() => [] as string[])).find((n) => /^sda\..*\.data$/.test(n) && !namesBefore.has(n));
    const expected = runFile ? before : base ? base.latest : null;
    const plain = await this.restore(dir);
    if (plain.exitCode === 0) {
      if (expected === null) r.problems.push("restore of a set without a complete data file exited 0");
      else if (plain.hash !== expected) r.problems.push(`restore exited 0 with a WRONG image (data file of the run ${runFile ? "complete" : "missing"})`);
    } else if (plain.hash !== null) {
      (this.tool.name === "ours" ? r.problems : r.loud).push(`failed restore (${plain.exitCode}) left an image under its final name`);
    }
    if (base) {
      const until = await this.restore(dir, base.last);
      if (until.exitCode === 0 && until.hash !== base.truths.get(base.last)) {
        r.problems.push(`the earlier state (--until ${base.last}) restores a WRONG image with exit 0`);
      } else if (until.exitCode !== 0) {
        (this.tool.name === "ours" ? r.problems : r.loud).push(`the earlier state (--until ${base.last}) no longer restores (exit ${until.exitCode}): ${lastErrors(until.output)}`);
      }
    }

    // Recovery: new data, then an inc into the same set, or (refused) a new full.
    await this.change();
    const after = await this.truth();
    const inc = await this.tool.backup(this.backupArgs("inc", dir, false)).result;
    if (inc.exitCode === 0) {
      r.recovery = "inc accepted";
      const check = await this.restore(dir);
      if (check.exitCode !== 0) r.problems.push(`inc after the kill was accepted (exit 0) but the set does not restore (exit ${check.exitCode})`);
      else if (check.hash !== after) r.problems.push("inc after the kill was accepted (exit 0) and the set restores a WRONG image");
      if (base) {
        // The checkpoints the set holds now: the trial's own (if its inc completed), then the recovery's.
        const cpt = JSON.parse(await readFile(join(dir, `${this.d.name}.cpt`), "utf8")) as string[];
        if (spec.level === "inc" && runFile) base.truths.set(cpt.at(-2)!, before);
        base.truths.set(cpt.at(-1)!, after);
        base.last = cpt.at(-1)!;
        base.latest = after;
      } else {
        this.set = null; // the next inc trial starts from a new full
      }
    } else {
      if (!REFUSALS.test(inc.output)) r.loud.push(`inc after the kill failed without a known refusal (${inc.exitCode}): ${lastErrors(inc.output)}`);
      r.recovery = "inc refused → new full";
      const set = await this.newFull();
      const check = await this.restore(set.dir);
      if (check.exitCode !== 0 || check.hash !== set.latest) r.problems.push(`the new full does not restore bit-exact (exit ${check.exitCode})`);
    }
    if (r.problems.length) this.log(`trial ${spec.level}/${spec.signal}/${spec.phase.name}: ${r.problems.join("; ")}`);
    return r;
  }
}

function lastErrors(output: string): string {
  return output
    .split("\n")
    .filter((l) => /ERROR|CRITICAL|Error/.test(l))
    .slice(-3)
    .join(" | ");
}

/** One line per trial and the totals, for t.diagnostic and reports. */
export function summarize(results: TrialResult[]): string[] {
  const lines = results.map(
    (r) =>
      `${r.problems.length ? "FAIL" : "ok  "} ${r.spec.signal.padEnd(7)} ${r.spec.level.padEnd(4)}${r.spec.compress ? " -z" : "   "} at ${r.spec.phase.name} +${r.spec.delayMs}ms` +
      ` (last phase: ${r.lastPhase}${r.killed ? "" : ", ended first"}) exit ${r.exitCode}${r.exitMs !== null ? ` after ${r.exitMs} ms` : ""}` +
      `${r.jobLeft ? ", job left" : ""}; ${r.recovery}${r.problems.length ? ` — ${r.problems.join("; ")}` : ""}${r.loud.length ? ` [loud: ${r.loud.join("; ")}]` : ""}`,
  );
  const survived = results.filter((r) => r.problems.length === 0).length;
  lines.push(`${results.length} trials, ${survived} survived, ${results.filter((r) => r.killed).length} killed before the end`);
  return lines;
}

/** Removes a trial's scratch directories (sets of earlier trials) to keep the temp dir small. */
export async function ensureDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
}

/** Small deterministic generator (mulberry32) for delays and choices. */
export function rng(s: number): () => number {
  let a = s >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
