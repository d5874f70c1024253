/**
 * A private sshd on 127.0.0.1 for qemu+ssh tests: its own host key, a fresh client key and
 * root login with that key only. `uri(path)` gives a libvirt URI through it;
 * `killSessions()` ends the ssh sessions (the libvirt connection sees EOF), `signalSessions()`
 * can freeze them (SIGSTOP: keepalive timeouts). Stopped by t.after.
 * Resolves null when sshd is not installed.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const execFileP = promisify(execFile);
const SSHD = "/usr/sbin/sshd";

export interface PrivateSshd {
  port: number;
  /** The address it listens on (default 127.0.0.1). */
  address: string;
  keyFile: string;
  /** libvirt URI for `path` (e.g. "/system") through this sshd. */
  uri(path: string): string;
  /** Kills the sshd session processes (children of the listener), keeping the listener. */
  killSessions(): Promise<number>;
  /** Sends a signal (e.g. SIGSTOP/SIGCONT) to the session processes and their children. */
  signalSessions(signal: NodeJS.Signals): Promise<number>;
  stop(): Promise<void>;
}

async function childPids(pid: number): Promise<number[]> {
  const { stdout } = await execFileP("ps", ["-o", "pid=", "--ppid", String(pid)]).catch(() => ({ stdout: "" }));
  return stdout
    .split(/\s+/)
    .filter(Boolean)
    .map(Number);
}

export interface PrivateSshdOptions {
  /** Listen address (default 127.0.0.1), e.g. the host end of a veth pair. */
  listen?: string;
  /** Serve the sftp subsystem (the Python tool's paramiko session needs it). */
  sftp?: boolean;
}

export async function startPrivateSshd(t: { after(fn: () => Promise<void>): void }, opts: PrivateSshdOptions = {}): Promise<PrivateSshd | null> {
  const address = opts.listen ?? "127.0.0.1";
  if (!existsSync(SSHD) || process.getuid?.() !== 0) return null;
  const dir = await mkdtemp(join(tmpdir(), "vnbt-sshd-"));
  await chmod(dir, 0o755);
  // sshd refuses to start without its privilege separation directory.
  await mkdir("/run/sshd", { recursive: true, mode: 0o755 });
  await execFileP("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "hostkey")]);
  await execFileP("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "userkey")]);
  await writeFile(join(dir, "authorized_keys"), await readFile(join(dir, "userkey.pub")));
  let child: ChildProcess | null = null;
  let port = 0;
  for (let attempt = 0; attempt < 10 && !child; attempt++) {
    port = 20000 + Math.floor(Math.random() * 40000);
    const config = [
      `Port ${port}`,
      `ListenAddress ${address}`,
      `HostKey ${join(dir, "hostkey")}`,
      "PermitRootLogin prohibit-password",
      `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "UsePAM no",
      "StrictModes no",
      `PidFile ${join(dir, "sshd.pid")}`,
      ...(opts.sftp ? ["Subsystem sftp internal-sftp"] : []),
    ].join("\n");
    await writeFile(join(dir, "sshd_config"), config + "\n");
    const c = spawn(SSHD, ["-D", "-e", "-f", join(dir, "sshd_config")], { stdio: ["ignore", "ignore", "pipe"] });
    const ok = await new Promise<boolean>((resolve) => {
      let err = "";
      c.stderr!.on("data", (d: Buffer) => {
        err += d.toString();
        if (err.includes("Server listening")) resolve(true);
      });
      c.on("exit", () => resolve(false));
      setTimeout(() => resolve(false), 5000);
    });
    if (ok) child = c;
    else c.kill("SIGKILL");
  }
  if (!child) {
    await rm(dir, { recursive: true, force: true });
    throw new Error("could not start a private sshd");
  }
  const listener = child;
  const keyFile = join(dir, "userkey");
  const sshd: PrivateSshd = {
    port,
    address,
    keyFile,
    uri: (path) => `qemu+ssh://root@${address}:${port}${path}?keyfile=${keyFile}&no_verify=1&no_tty=1`,
    async killSessions() {
      const pids = await childPids(listener.pid!);
      for (const pid of pids) process.kill(pid, "SIGTERM");
      return pids.length;
    },
    async signalSessions(signal) {
      const sessions = await childPids(listener.pid!);
      const all = [...sessions];
      for (const pid of sessions) all.push(...(await childPids(pid)));
      for (const pid of all) process.kill(pid, signal);
      return all.length;
    },
    async stop() {
      await sshd.signalSessions("SIGCONT").catch(() => 0);
      for (const pid of await childPids(listener.pid!)) process.kill(pid, "SIGTERM");
      if (listener.exitCode === null) {
        const exited = new Promise((r) => listener.once("exit", r));
        listener.kill("SIGTERM");
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
  t.after(() => sshd.stop());
  return sshd;
}
