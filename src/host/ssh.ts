/**
 * A remote hypervisor reached with the system ssh client (docs/behaviour.md, "Remote mode"): one ControlMaster
 * connection per run, every command a multiplexed session over it.
 *
 * Why the system client (and not a JavaScript ssh library): it honours the admin's ssh config,
 * agent, known_hosts, ProxyJump/ProxyCommand, certificates and hardware keys exactly as `ssh`
 * and libvirt's own qemu+ssh transport do, and needs no extra dependency.
 *
 * Lifetime, also when we are killed:
 * - The master runs `cat` on the remote side with its stdin tied to ours. When this process
 *   dies, that stdin ends, the remote `cat` exits and the master (ControlPersist=no) leaves as
 *   soon as no session is left.
 * - Long-running commands (`spawn`, i.e. qemu-nbd) run under a small remote shell wrapper that
 *   reports the remote pid and kills the command when the session's stdin ends: when we stop it,
 *   when we die, or when the connection drops. A remote process never outlives our run.
 * - `close()` stops what is still running, then `ssh -O exit`.
 *
 * Every argument is single-quoted for the remote POSIX shell. Files are moved with `ln` + `rm`
 * (never replacing), read and written with `cat` (binary-safe).
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createReadStream } from "node:fs";
import { rmSync } from "node:fs";
import { mkdtemp, readdir, rm, rmdir, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, posix } from "node:path";
import { pipeline } from "node:stream/promises";
import type { Readable } from "node:stream";
import type { CommandResult, Host, HostProcess } from "./host.js";
import { TargetExistsError } from "../storage/durable.js";

const STDERR_KEEP = 16 * 1024;
const READY = "virtnbd-ssh-ready";
const PID_PREFIX = "virtnbd-remote-pid ";
/** How long the ssh login may take (TCP connect, key exchange, authentication). */
const CONNECT_TIMEOUT_S = 20;

/** Single-quotes a word for a POSIX shell (plain words stay as they are). */
export function shQuote(word: string): string {
  if (/^[A-Za-z0-9_\/.,:=+@%-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** A command line for the remote shell. */
export function shCommand(command: string, args: readonly string[]): string {
  return [command, ...args].map(shQuote).join(" ");
}

/**
 * The remote wrapper around a long-running command: prints its pid, waits for it, and stops it as
 * soon as the session's stdin ends: SIGTERM once a second (qemu-nbd drops a SIGTERM that arrives
 * while it starts up), SIGKILL after five. The command's stdout goes to stderr so stdout carries
 * only the pid line. One line, no newlines, for any login shell that parses `sh` syntax.
 */
export function supervisedCommand(commandLine: string): string {
  return [
    "exec 3<&0 </dev/null",
    `${commandLine} 1>&2 3<&- & p=$!`,
    `echo "${PID_PREFIX}$p"`,
    `( while read -r _ <&3; do :; done; for i in 1 2 3 4 5; do kill -TERM "$p" || exit; sleep 1; done; kill -KILL "$p" ) >/dev/null 2>&1 & w=$!`,
    `wait "$p"; rc=$?`,
    `kill "$w" 2>/dev/null`,
    `exit "$rc"`,
  ].join("; ");
}

export interface SshTarget {
  host: string;
  user: string;
  port: number;
  /** Identity file (`ssh -i`); agent and default keys otherwise. */
  keyFile?: string | null;
}

export class SshError extends Error {}

/** The useful part of ssh's stderr: the last lines that are not notices about known_hosts. */
function sshReason(stderr: string, fallback: string): string {
  const lines = stderr
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !/^Warning: Permanently added/.test(l));
  return lines.slice(-3).join("; ") || fallback;
}

function collect(stream: Readable, keep = Infinity): { text: () => string; buffer: () => Buffer } {
  const chunks: Buffer[] = [];
  let size = 0;
  stream.on("data", (d: Buffer) => {
    chunks.push(d);
    size += d.length;
    while (size > keep && chunks.length > 1) size -= chunks.shift()!.length;
  });
  return { buffer: () => Buffer.concat(chunks), text: () => Buffer.concat(chunks).toString() };
}

interface Exit {
  code: number;
}

function exitOf(child: ChildProcessWithoutNullStreams): Promise<Exit> {
  return new Promise((resolve) => {
    let done = false;
    child.once("error", () => {
      if (!done) {
        done = true;
        resolve({ code: 127 });
      }
    });
    child.once("close", (code, signal) => {
      if (!done) {
        done = true;
        resolve({ code: code ?? (signal ? 128 : 1) });
      }
    });
  });
}

export class SshHost implements Host {
  readonly remote = true;
  readonly name: string;
  private readonly processes = new Set<RemoteProcess>();
  private closed = false;

  private constructor(
    readonly target: SshTarget,
    private readonly dir: string,
    private readonly master: ChildProcessWithoutNullStreams,
    private readonly masterExit: Promise<Exit>,
  ) {
    this.name = target.host;
  }

  private get controlPath(): string {
    return join(this.dir, "cm");
  }

  /** Options for every ssh invocation (the master's and the sessions'). */
  private static baseArgs(t: SshTarget, controlPath: string): string[] {
    const args = [
      "-T",
      "-o", `ControlPath=${controlPath}`,
      "-o", "BatchMode=yes",
      // The original (paramiko AutoAddPolicy) adds unknown host keys; a changed key still fails.
      "-o", "StrictHostKeyChecking=accept-new",
      "-o", `ConnectTimeout=${CONNECT_TIMEOUT_S}`,
      "-o", "ServerAliveInterval=15",
      "-o", "ServerAliveCountMax=4",
      "-o", "ClearAllForwardings=yes",
      // A RemoteCommand or LocalCommand from the ssh config would replace or run beside ours.
      "-o", "RemoteCommand=none",
      "-o", "PermitLocalCommand=no",
      "-p", String(t.port),
      "-l", t.user,
    ];
    if (t.keyFile) args.push("-i", t.keyFile, "-o", "IdentitiesOnly=yes");
    return args;
  }

  /**
   * Logs in (one master connection). Rejects with SshError naming ssh's reason (authentication,
   * host key, unreachable host, …).
   */
  static async connect(target: SshTarget): Promise<SshHost> {
    // A host or user starting with "-" would be read as an ssh option.
    if (!target.host || target.host.startsWith("-")) throw new SshError(`Invalid ssh host [${target.host}]`);
    if (!target.user || target.user.startsWith("-")) throw new SshError(`Invalid ssh user [${target.user}]`);
    // The control socket path must fit a unix socket address (about 100 bytes).
    const base = tmpdir().length <= 60 ? tmpdir() : "/tmp";
    await sweepControlDirs(base);
    const dir = await mkdtemp(join(base, "virtnbd-ssh-"));
    const controlPath = join(dir, "cm");
    const args = [
      ...SshHost.baseArgs(target, controlPath),
      "-o", "ControlMaster=yes",
      "-o", "ControlPersist=no",
      target.host,
      "--",
      `echo ${READY}; exec cat >/dev/null`,
    ];
    const master = spawn("ssh", args, { stdio: ["pipe", "pipe", "pipe"] });
    const exit = exitOf(master);
    const stderr = collect(master.stderr, STDERR_KEEP);
    let stdout = "";
    const ready = new Promise<boolean>((resolve) => {
      master.stdout.on("data", (d: Buffer) => {
        stdout += d.toString();
        if (stdout.split(/\r?\n/).includes(READY)) resolve(true);
      });
      void exit.then(() => resolve(false));
    });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), (CONNECT_TIMEOUT_S + 10) * 1000)));
    const outcome = await Promise.race([ready, timedOut]);
    clearTimeout(timer);
    if (outcome === true) {
      // The control socket is set up right after authentication; wait until it is there.
      const deadline = Date.now() + 5000;
      while (!(await stat(controlPath).catch(() => null)) && Date.now() < deadline && master.exitCode === null) {
        await new Promise((r) => setTimeout(r, 10));
      }
      if (await stat(controlPath).catch(() => null)) return new SshHost(target, dir, master, exit);
    }
    master.kill("SIGTERM");
    const { code } = await exit;
    await rm(dir, { recursive: true, force: true });
    const why =
      outcome === "timeout"
        ? `no answer within ${CONNECT_TIMEOUT_S + 10} s`
        : sshReason(stderr.text(), code === 127 ? "ssh client not found" : `ssh exited with code ${code}`);
    throw new SshError(why);
  }

  private sshArgs(commandLine: string): string[] {
    return [...SshHost.baseArgs(this.target, this.controlPath), "-o", "ControlMaster=no", this.target.host, "--", commandLine];
  }

  private check(): void {
    if (this.closed) throw new SshError(`ssh connection to [${this.target.host}] is closed`);
  }

  /** Runs a command line through the remote shell; stdin from `input` (or empty). */
  async runLine(commandLine: string, input?: Buffer | Readable): Promise<{ exitCode: number; stdout: Buffer; stderr: string }> {
    this.check();
    const child = spawn("ssh", this.sshArgs(commandLine), { stdio: ["pipe", "pipe", "pipe"] });
    const exit = exitOf(child);
    const out = collect(child.stdout);
    const err = collect(child.stderr, STDERR_KEEP);
    child.stdin.on("error", () => undefined); // the remote side may stop reading early
    let feeding: Promise<void> = Promise.resolve();
    if (input === undefined) child.stdin.end();
    else if (Buffer.isBuffer(input)) child.stdin.end(input);
    else feeding = pipeline(input, child.stdin).catch(() => undefined);
    const [{ code }] = await Promise.all([exit, feeding]);
    return { exitCode: code, stdout: out.buffer(), stderr: err.text() };
  }

  async run(command: string, args: readonly string[]): Promise<CommandResult> {
    const r = await this.runLine(shCommand(command, args));
    return { exitCode: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr };
  }

  private async mustRun(what: string, commandLine: string, input?: Buffer | Readable): Promise<Buffer> {
    const r = await this.runLine(commandLine, input);
    if (r.exitCode !== 0) throw new SshError(`${what} on [${this.target.host}] failed: ${sshReason(r.stderr, `exit code ${r.exitCode}`)}`);
    return r.stdout;
  }

  spawn(command: string, args: readonly string[]): HostProcess {
    this.check();
    const child = spawn("ssh", this.sshArgs(supervisedCommand(shCommand(command, args))), { stdio: ["pipe", "pipe", "pipe"] });
    const p = new RemoteProcess(this, child);
    this.processes.add(p);
    void p.exited.then(() => this.processes.delete(p));
    return p;
  }

  async exists(path: string): Promise<boolean> {
    const r = await this.runLine(`test -e ${shQuote(path)}`);
    if (r.exitCode === 0) return true;
    if (r.exitCode === 1) return false;
    throw new SshError(`Checking [${path}] on [${this.target.host}] failed: ${sshReason(r.stderr, `exit code ${r.exitCode}`)}`);
  }

  readFile(path: string): Promise<Buffer> {
    return this.mustRun(`Reading [${path}]`, `cat -- ${shQuote(path)}`);
  }

  async writeFile(path: string, data: string | Uint8Array): Promise<void> {
    await this.mustRun(`Writing [${path}]`, `cat > ${shQuote(path)}`, Buffer.from(data));
  }

  async copyFileTo(localPath: string, hostPath: string): Promise<void> {
    await this.mustRun(`Uploading [${localPath}] to [${hostPath}]`, `cat > ${shQuote(hostPath)}`, createReadStream(localPath));
  }

  async mkdir(path: string): Promise<void> {
    await this.mustRun(`Creating directory [${path}]`, `mkdir -p -- ${shQuote(path)}`);
  }

  async moveNoReplace(from: string, to: string): Promise<void> {
    const dir = posix.dirname(to);
    const r = await this.runLine(
      `ln -- ${shQuote(from)} ${shQuote(to)} && rm -f -- ${shQuote(from)} && { sync -- ${shQuote(dir)} 2>/dev/null || :; }`,
    );
    if (r.exitCode === 0) return;
    if (/File exists/.test(r.stderr)) throw new TargetExistsError(to);
    throw new SshError(`Moving [${from}] to [${to}] on [${this.target.host}] failed: ${sshReason(r.stderr, `exit code ${r.exitCode}`)}`);
  }

  async remove(path: string): Promise<void> {
    await this.mustRun(`Removing [${path}]`, `rm -f -- ${shQuote(path)}`);
  }

  /**
   * For a process about to exit (signal handlers): synchronously tells every remote process and
   * the master to end (their stdin closes; they finish on their own) and removes the control dir.
   */
  abandon(): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.processes) p.kill("SIGTERM");
    this.master.stdin.end();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Stops remote processes still running, ends the master connection, removes the control dir. */
  async close(): Promise<void> {
    if (this.closed) return;
    const running = [...this.processes];
    for (const p of running) p.kill("SIGTERM");
    let wait: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(running.map((p) => p.exited)), new Promise((r) => (wait = setTimeout(r, 5000)))]);
    clearTimeout(wait);
    this.closed = true;
    const exit = spawn("ssh", ["-o", `ControlPath=${this.controlPath}`, "-O", "exit", "-p", String(this.target.port), "-l", this.target.user, this.target.host], {
      stdio: "ignore",
    });
    await new Promise((r) => {
      exit.once("close", r);
      exit.once("error", r);
    });
    this.master.stdin.end();
    const timer = setTimeout(() => this.master.kill("SIGTERM"), 5000);
    await this.masterExit;
    clearTimeout(timer);
    await rm(this.dir, { recursive: true, force: true });
  }
}

/**
 * Control directories of runs that were killed stay behind (the master removes its socket when
 * it ends): remove those that are empty and older than ten minutes. A live master always has its
 * socket in there.
 */
async function sweepControlDirs(base: string): Promise<void> {
  const names = await readdir(base).catch(() => [] as string[]);
  for (const name of names.filter((n) => n.startsWith("virtnbd-ssh-"))) {
    const dir = join(base, name);
    const st = await stat(dir).catch(() => null);
    if (!st?.isDirectory() || Date.now() - st.mtimeMs < 10 * 60_000) continue;
    if ((await readdir(dir).catch(() => ["?"])).length === 0) await rmdir(dir).catch(() => undefined);
  }
}

/** A command on the remote host under the supervising wrapper. */
class RemoteProcess implements HostProcess {
  private remotePid: number | undefined;
  private stderr = "";
  readonly exited: Promise<number>;

  constructor(
    private readonly host: SshHost,
    private readonly child: ChildProcessWithoutNullStreams,
  ) {
    let stdout = "";
    child.stdout.on("data", (d: Buffer) => {
      if (this.remotePid !== undefined) return;
      stdout += d.toString();
      const m = new RegExp(`^${PID_PREFIX}(\\d+)$`, "m").exec(stdout);
      if (m) this.remotePid = Number(m[1]);
    });
    child.stderr.on("data", (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-STDERR_KEEP);
    });
    child.stdin.on("error", () => undefined);
    this.exited = exitOf(child).then((e) => e.code);
  }

  get pid(): number | undefined {
    return this.remotePid;
  }

  stderrText(): string {
    return this.stderr;
  }

  kill(signal: NodeJS.Signals = "SIGTERM"): void {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const pid = this.remotePid;
    const endStdin = () => this.child.stdin.end();
    if (pid === undefined) {
      endStdin(); // the wrapper sends SIGTERM
      return;
    }
    // Over ssh with the signal asked for; ending stdin then makes sure (the wrapper's SIGTERM).
    const sent = this.host.runLine(`kill -s ${signal.replace(/^SIG/, "")} ${pid} 2>/dev/null`).catch(() => undefined);
    if (signal === "SIGTERM") endStdin();
    else void sent.finally(endStdin);
  }
}
