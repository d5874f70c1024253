/** The local machine as a Host. */
import { access, copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { execa } from "execa";
import type { CommandResult, Host, HostProcess } from "./host.js";
import { moveInto } from "../storage/durable.js";

const STDERR_KEEP = 16 * 1024;

export class LocalHost implements Host {
  readonly remote = false;
  readonly name = hostname();

  async run(command: string, args: readonly string[]): Promise<CommandResult> {
    const r = await execa(command, args, { reject: false, stripFinalNewline: false });
    if (r.failed && r.exitCode === undefined) {
      const code = (r as unknown as { code?: string }).code;
      return { exitCode: code === "ENOENT" ? 127 : 1, stdout: "", stderr: String((r as { message?: string }).message ?? "") };
    }
    return { exitCode: r.exitCode ?? 1, stdout: String(r.stdout), stderr: String(r.stderr) };
  }

  spawn(command: string, args: readonly string[]): HostProcess {
    const child = execa(command, args, { reject: false, stdin: "ignore", stdout: "ignore", stderr: "pipe", buffer: false });
    let stderr = "";
    child.stderr?.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-STDERR_KEEP);
    });
    const exited = child.then((r) => r.exitCode ?? (r.signal ? 128 : 1));
    return {
      pid: child.pid,
      exited,
      stderrText: () => stderr,
      kill: (signal = "SIGTERM") => void child.kill(signal),
    };
  }

  async exists(path: string): Promise<boolean> {
    try {
      await access(path);
      return true;
    } catch {
      return false;
    }
  }

  readFile(path: string): Promise<Buffer> {
    return readFile(path);
  }

  writeFile(path: string, data: string | Uint8Array): Promise<void> {
    return writeFile(path, data);
  }

  copyFileTo(localPath: string, hostPath: string): Promise<void> {
    return copyFile(localPath, hostPath);
  }

  async mkdir(path: string): Promise<void> {
    await mkdir(path, { recursive: true });
  }

  moveNoReplace(from: string, to: string): Promise<void> {
    return moveInto(from, to, false);
  }

  remove(path: string): Promise<void> {
    return rm(path, { force: true });
  }

  async close(): Promise<void> {}
}
