/**
 * Running the real `bin/virtnbdmap.js` (the built `dist/`, as users run it) in tests.
 *
 *   await ensureBuilt();                                  // tsc if dist/ is older than src/
 *   const m = await startMap(t, [full, inc], { args: ["-t", "4"] });
 *   await exportHash(m.uri);                              // sha256 of the whole export (nbdcopy)
 *   const { code, output } = await m.stop("SIGTERM");
 *
 * `startMap` waits for "Press CTRL+C to disconnect" and registers a SIGKILL fallback with
 * `t.after`. `runMap` runs it to completion (for the error cases).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { canConnect, freePort } from "./nbd-servers.js";

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
export const portOpen = canConnect;

export const ROOT = new URL("../..", import.meta.url).pathname;
export const MAP_BIN = join(ROOT, "bin/virtnbdmap.js");

function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : e.name.endsWith(".ts") ? statSync(p).mtimeMs : 0);
  }
  return t;
}

let built = false;
/** Compiles src/ to dist/ (tsc only; the native addon is built by `npm run build`) when stale. */
export function ensureBuilt(): void {
  if (built) return;
  let distTime = 0;
  try {
    distTime = statSync(join(ROOT, "dist/cli/map.js")).mtimeMs;
  } catch {
    /* not built */
  }
  if (distTime < newest(join(ROOT, "src"))) {
    spawnSync("npx", ["tsc", "-p", "tsconfig.json"], { cwd: ROOT, stdio: "ignore" });
  }
  statSync(join(ROOT, "dist/cli/map.js"));
  built = true;
}

export interface MapProcess {
  port: number;
  uri: string;
  proc: ChildProcess;
  output(): string;
  /** Resolves with the exit code and the whole output when the process ends by itself. */
  wait(): Promise<{ code: number | null; output: string }>;
  /** Sends the signal and resolves with the exit code and the whole output. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; output: string }>;
  /** The map's temp directory (the overlay's, and the server log's without -v). */
  tmpDir(): string;
}

interface After {
  after(fn: () => unknown): void;
}

export async function startMap(t: After, files: string[], opts: { args?: string[]; exportName?: string; logFile?: string } = {}): Promise<MapProcess> {
  ensureBuilt();
  const port = await freePort();
  const exportName = opts.exportName ?? "sda";
  const args = [MAP_BIN, "--listen-only", "-p", String(port), "-e", exportName, "--nocolor", "-f", files.join(",")];
  if (opts.logFile) args.push("-L", opts.logFile);
  args.push(...(opts.args ?? []));
  const proc = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, HOME: process.env["HOME"] ?? "/root" } });
  let out = "";
  proc.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  proc.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
  t.after(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
  });
  const deadline = Date.now() + 60_000;
  while (!out.includes("Press CTRL+C to disconnect")) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`virtnbdmap exited early (${proc.exitCode}):\n${out}`);
    if (Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`virtnbdmap did not come up:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  const m: MapProcess = {
    port,
    uri: `nbd://127.0.0.1:${port}/${exportName}`,
    proc,
    output: () => out,
    async wait() {
      return { code: await exited, output: out };
    },
    async stop(signal = "SIGTERM") {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const code = await exited;
      return { code, output: out };
    },
    tmpDir() {
      const d = /temporary directory: \[([^\]]+)\]/.exec(out);
      if (!d) throw new Error(`no temporary directory in:\n${out}`);
      return d[1]!;
    },
  };
  return m;
}

/** Runs virtnbdmap to its end (error cases); SIGTERMs it if it reaches the waiting state. */
export async function runMap(args: string[], opts: { timeoutMs?: number } = {}): Promise<{ code: number | null; output: string }> {
  ensureBuilt();
  const proc = spawn(process.execPath, [MAP_BIN, "--nocolor", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  proc.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  proc.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const timer = setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs ?? 30_000);
  const poll = setInterval(() => {
    if (out.includes("Press CTRL+C")) proc.kill("SIGTERM");
  }, 50);
  const code = await new Promise<number | null>((r) => proc.once("exit", (c) => r(c)));
  clearTimeout(timer);
  clearInterval(poll);
  return { code, output: out };
}

/** sha256 of everything an NBD export serves, read with nbdcopy (to stdout). */
export function exportHash(uri: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("nbdcopy", [uri, "-"], { stdio: ["ignore", "pipe", "pipe"] });
    const hash = createHash("sha256");
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => hash.update(c));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(hash.digest("hex")) : reject(new Error(`nbdcopy ${uri} failed (${code}): ${stderr}`))));
  });
}

/** sha256 of a file. */
export function fileHash(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash("sha256");
    createReadStream(path)
      .on("data", (c) => h.update(c))
      .on("error", reject)
      .on("end", () => resolve(h.digest("hex")));
  });
}

export { pidAlive } from "./process.js";

