/**
 * Running our real `bin/virtnbdbackup.js` / `bin/virtnbdrestore.js` (the built `dist/`, as users
 * run them) in integration tests, and recording the truth a backup set must restore to.
 *
 *   const r = await ourBackup(["-d", d.name, "-l", "full", "-o", dir]);   // { exitCode, stdout, stderr, all }
 *   const r = await ourBackup([...,"-o", "-"], { stdoutFile: zip, cwd });   // zip archive into a file
 *   const p = startOurBackup([...]);  p.child.kill("SIGINT");  await p.result;
 *   const r = await ourRestore(["-i", dir, "-o", out]);
 *   const truth = await captureTruth(d);                                   // { sda: sha256, … }
 *   await imageHash(path, "qcow2")                                          // sha256 of the virtual content
 *
 * `--nocolor` is always passed. `ensureBuilt()` runs once per process: the native addon is built
 * when missing or older than its sources, `tsc` and the bundles when `dist/` is missing or older
 * than `src/`.
 */
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, readdirSync, statSync } from "node:fs";
import { pipeline } from "node:stream/promises";
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import type { TestDomain } from "./domains.js";

export const ROOT = new URL("../..", import.meta.url).pathname;
export const OUR_BACKUP = join(ROOT, "bin/virtnbdbackup.js");
export const OUR_RESTORE = join(ROOT, "bin/virtnbdrestore.js");
export const OUR_PRUNE = join(ROOT, "bin/virtnbdprune.js");
const ADDON = join(ROOT, "src/native/build/Release/virtnbd.node");

function newest(dir: string, accept: (name: string) => boolean): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== "build") t = Math.max(t, newest(p, accept));
    } else if (accept(e.name)) t = Math.max(t, statSync(p).mtimeMs);
  }
  return t;
}

const mtime = (p: string): number => {
  try {
    return statSync(p).mtimeMs;
  } catch {
    return 0;
  }
};

function runOrThrow(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
}

let built = false;
/** Builds what is stale (native addon, then tsc into dist/); cheap when everything is current. */
export function ensureBuilt(): void {
  if (built) return;
  const nativeSrc = newest(join(ROOT, "src/native"), (n) => /\.(cc|h|gyp)$/.test(n));
  if (mtime(ADDON) < nativeSrc) runOrThrow("npm", ["run", "--silent", "build:native"]);
  // Library code (dist/) for in-process use: any src/*.ts newer than the oldest entry point → tsc.
  const dist = Math.min(mtime(join(ROOT, "dist/cli/backup.js")), mtime(join(ROOT, "dist/cli/restore.js")), mtime(join(ROOT, "dist/cli/command.js")));
  const sources = newest(join(ROOT, "src"), (n) => n.endsWith(".ts"));
  if (dist < sources) runOrThrow("npx", ["tsc", "-p", "tsconfig.json"]);
  // The bins run the bundles (scripts/bundle.js).
  const bundles = Math.min(...["virtnbdbackup", "virtnbdrestore", "virtnbdmap"].map((n) => mtime(join(ROOT, `dist/bin/${n}.cjs`))));
  if (bundles < sources) runOrThrow("node", ["scripts/bundle.js"]);
  built = true;
}

export interface ToolResult {
  exitCode: number;
  /** Set when the process died from a signal it did not handle. */
  signal: string | null;
  stdout: string;
  stderr: string;
  /** stdout and stderr interleaved. */
  all: string;
}

export interface RunOptions {
  cwd?: string;
  /** Send stdout into this file (zip archives with `-o -`; stdout is then a regular file); `stdout` is then "". */
  stdoutFile?: string;
  /** Send stdout through a pipe into this file (stdout is then a pipe, not seekable); `stdout` is then "". */
  stdoutPipe?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** Run inside this network namespace (`ip netns exec <name>`). */
  netns?: string;
}

function toResult(r: Awaited<ResultPromise>): ToolResult {
  return {
    exitCode: r.exitCode ?? (r.signal ? 128 : 1),
    signal: r.signal ?? null,
    stdout: typeof r.stdout === "string" ? r.stdout : "",
    stderr: String(r.stderr ?? ""),
    all: String(r.all ?? r.stderr ?? ""),
  };
}

export interface RunningTool {
  child: ResultPromise;
  pid: number;
  result: Promise<ToolResult>;
}

function start(bin: string, args: string[], o: RunOptions = {}): RunningTool {
  ensureBuilt();
  const [cmd, prefix] = o.netns ? ["ip", ["netns", "exec", o.netns, process.execPath]] : [process.execPath, []];
  const child = execa(cmd, [...prefix, bin, "--nocolor", ...args], {
    cwd: o.cwd ?? ROOT,
    env: o.env,
    reject: false,
    // `all` would hold back an unbuffered stdout: only without stdoutPipe.
    all: !o.stdoutPipe,
    stdin: "ignore",
    stdout: o.stdoutFile ? { file: o.stdoutFile } : "pipe",
    buffer: { stdout: !o.stdoutPipe },
    timeout: o.timeoutMs ?? 240_000,
    killSignal: "SIGKILL",
  });
  const piped = o.stdoutPipe ? pipeline(child.stdout!, createWriteStream(o.stdoutPipe)) : Promise.resolve();
  const result = Promise.all([child, piped]).then(([r]) => toResult(r));
  return { child, pid: child.pid!, result };
}

/** Runs our virtnbdbackup to its end. */
export function ourBackup(args: string[], o: RunOptions = {}): Promise<ToolResult> {
  return start(OUR_BACKUP, args, o).result;
}

/** Starts our virtnbdbackup (for signal tests). */
export function startOurBackup(args: string[], o: RunOptions = {}): RunningTool {
  return start(OUR_BACKUP, args, o);
}

/** Runs our virtnbdrestore to its end. */
export function ourRestore(args: string[], o: RunOptions = {}): Promise<ToolResult> {
  return start(OUR_RESTORE, args, o).result;
}

/** Starts our virtnbdrestore (for signal tests and live restores). */
export function startOurRestore(args: string[], o: RunOptions = {}): RunningTool {
  return start(OUR_RESTORE, args, o);
}

/** Runs our virtnbdprune to its end. */
export function ourPrune(args: string[], o: RunOptions = {}): Promise<ToolResult> {
  return start(OUR_PRUNE, args, o).result;
}

/** Starts our virtnbdprune (for kill tests). */
export function startOurPrune(args: string[], o: RunOptions = {}): RunningTool {
  return start(OUR_PRUNE, args, o);
}

/** Fails with the whole output when the run did not exit 0. */
export function assertOk(r: ToolResult, what: string): ToolResult {
  if (r.exitCode !== 0) throw new Error(`${what} exited ${r.exitCode}${r.signal ? ` (${r.signal})` : ""}:\n${r.all}`);
  return r;
}

/** Lines of a run's log output at a level (`ERROR`, `WARNING`, …). */
export function logLines(r: ToolResult, level: string): string[] {
  return r.stderr.split("\n").filter((l) => new RegExp(`\\b${level}\\b`).test(l));
}

/**
 * The true content of every disk at this moment (sha256 of the whole virtual disk, read through
 * NBD). Call right after a backup returns: our backup has ended its job by then, so the domain's
 * private NBD export can be started.
 */
export function captureTruth(d: TestDomain): Promise<Record<string, string>> {
  return d.diskHashes();
}

/** sha256 of everything `nbdcopy <args> -` writes to stdout. */
export function nbdcopyHash(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("nbdcopy", args, { stdio: ["ignore", "pipe", "pipe"] });
    const hash = createHash("sha256");
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => hash.update(chunk));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(hash.digest("hex")) : reject(new Error(`nbdcopy ${args.join(" ")} failed (${code}): ${stderr.trim()}`))));
  });
}

/**
 * sha256 of an image's virtual content (qemu-nbd -r + nbdcopy), as TestDomain.diskHash reports.
 * Waits while another process holds the image's write lock: the Python tool's forked qemu-nbd
 * may still be writing back when the tool returns.
 */
export async function imageHash(path: string, format: string): Promise<string> {
  // Wait with qemu-img info: a failing qemu-nbd under nbdcopy leaves libnbd's temp dir behind.
  const deadline = Date.now() + 20_000;
  for (;;) {
    const info = await execa("qemu-img", ["info", "-f", format, path], { reject: false });
    if (info.exitCode === 0 || !/lock/.test(String(info.stderr)) || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return nbdcopyHash(["--", "[", "qemu-nbd", "-r", "-f", format, path, "]", "-"]);
}

/** sha256 of a file's bytes. */
export async function fileHash(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest("hex");
}

/** `qemu-img info --output json` of an image. */
export async function imageInfo(path: string): Promise<Record<string, unknown>> {
  const r = await execa("qemu-img", ["info", "--output", "json", "-U", path]);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

/** Runs a helper command, throwing with its output when it fails. */
export async function sh(cmd: string, args: string[], o: { cwd?: string; stdoutFile?: string } = {}): Promise<string> {
  const r = await execa(cmd, args, { cwd: o.cwd, reject: false, all: true, stdout: o.stdoutFile ? { file: o.stdoutFile } : "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.exitCode}):\n${r.all}`);
  return typeof r.stdout === "string" ? r.stdout : "";
}
