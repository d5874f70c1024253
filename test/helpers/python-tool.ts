/** Runs the Debian package's Python tools (the reference peer) with a clean environment. */
import { execa, type Result } from "execa";

export const PY_BACKUP = "/usr/bin/virtnbdbackup";
export const PY_RESTORE = "/usr/bin/virtnbdrestore";
export const PY_MAP = "/usr/bin/virtnbdmap";

/** Debian's python3 (the tools' shebang), never a pyenv shim on PATH. */
const env = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: process.env["HOME"] ?? "/root", LC_ALL: "C.UTF-8" };

export function runPython(tool: string, args: string[], options: { cwd?: string; input?: string } = {}): Promise<Result> {
  return execa(tool, args, { env, extendEnv: false, reject: false, all: true, cwd: options.cwd, input: options.input });
}
