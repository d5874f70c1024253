/**
 * Backups for the map tests: run our `bin/virtnbdbackup.js` or the Debian Python tool against a
 * test domain, into a directory or (`-o -`) into a zip file, and fail loudly with the output.
 */
import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { join } from "node:path";
import { PY_BACKUP } from "./python-tool.js";
import { ensureBuilt, ROOT } from "./map-run.js";

export type Tool = "ours" | "python";

const PY_ENV = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: process.env["HOME"] ?? "/root", LC_ALL: "C.UTF-8" };

function command(tool: Tool, args: string[]): [string, string[], NodeJS.ProcessEnv] {
  if (tool === "python") return [PY_BACKUP, args, PY_ENV];
  ensureBuilt();
  return [process.execPath, [join(ROOT, "bin/virtnbdbackup.js"), "--nocolor", ...args], process.env];
}

/**
 * `virtnbdbackup -d <domain> -l <level> -n [-z] -o <dir>`, or with `zip` set `-o -` with stdout
 * into that file (run in `cwd`, where `-o -` keeps its side files between runs).
 */
export async function backup(
  tool: Tool,
  o: { domain: string; level: "full" | "inc" | "diff"; dir?: string; zip?: string; cwd?: string; compress?: boolean },
): Promise<void> {
  const args = ["-d", o.domain, "-l", o.level, "-n"];
  if (o.compress) args.push("-z");
  args.push("-o", o.zip ? "-" : o.dir!);
  const [cmd, argv, env] = command(tool, args);
  const out = o.zip ? openSync(o.zip, "w") : "pipe";
  try {
    const child = spawn(cmd, argv, { cwd: o.cwd ?? o.dir ?? ROOT, env, stdio: ["ignore", out, "pipe"] });
    let text = "";
    child.stderr!.on("data", (d: Buffer) => (text += d.toString()));
    child.stdout?.on("data", (d: Buffer) => (text += d.toString()));
    const code = await new Promise<number | null>((r) => child.once("close", (c) => r(c)));
    if (code !== 0) throw new Error(`${tool} backup ${o.level} of ${o.domain} failed (${code}):\n${text}`);
  } finally {
    if (typeof out === "number") closeSync(out);
  }
}
