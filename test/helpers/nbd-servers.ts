/**
 * Real NBD peers for integration tests: qemu-nbd and nbdkit on a temporary unix socket (or
 * TCP port), always stopped after the test (also when it fails, and when the test process
 * exits early). Plus small wrappers around qemu-img / qemu-io / nbdinfo / nbdcopy and a
 * throwaway x509 CA with server and client certificates in qemu's directory layout.
 *
 *   const img = await makeImage(t, { size: 64 * MiB, format: "qcow2", writes: [{ pattern: 0x55, offset: MiB, length: 64 * KiB }] });
 *   const exp = await startQemuNbd(t, { image: img, format: "qcow2", exportName: "sda", bitmap: "b0" });
 *   exp.uri  // nbd+unix:///sda?socket=/tmp/vnbt-nbd-xxxx/nbd.sock
 *   const kit = await startNbdkit(t, { plugin: "memory", args: ["64M"], filters: ["error"], params: ["error-pread-rate=100%"] });
 */
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { formatNbdUri, type NbdTarget } from "../../src/nbd/uri.js";
import { tempDir } from "./tmp.js";

/** scripts/make-test-certs.sh (CA + server/client certificates in qemu's layout). */
export const MAKE_TEST_CERTS = new URL("../../scripts/make-test-certs.sh", import.meta.url).pathname;

export const KiB = 1024;
export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

type After = Pick<TestContext, "after">;

const live = new Set<ChildProcess>();
let exitHook = false;
function track(p: ChildProcess): void {
  live.add(p);
  p.once("exit", () => live.delete(p));
  if (!exitHook) {
    exitHook = true;
    const killAll = (): void => {
      for (const c of live) c.kill("SIGKILL");
    };
    process.once("exit", killAll);
    // A test run that is interrupted or timed out must not leave servers behind.
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      process.once(sig, () => {
        killAll();
        setImmediate(() => process.exit(sig === "SIGINT" ? 130 : 143));
      });
    }
  }
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command; rejects on a non-zero exit unless `allowFail`. */
export function run(cmd: string, args: readonly string[], opts: { allowFail?: boolean; timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args as string[],
      { encoding: "utf8", maxBuffer: 64 * MiB, timeout: opts.timeoutMs ?? 60000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === "number" ? ((err as { code: number }).code) : 1) : 0;
        if (code !== 0 && !opts.allowFail) {
          reject(new Error(`${cmd} ${args.join(" ")} failed (${code}): ${stderr || stdout || (err as Error).message}`));
        } else resolve({ code, stdout, stderr });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** An NBD server process. */
export interface NbdPeer {
  target: NbdTarget;
  exportName: string;
  /** `nbd+unix:///<export>?socket=…` or `nbd://127.0.0.1:<port>/<export>`. */
  uri: string;
  /** Unix socket path ("" for TCP). */
  socket: string;
  port: number;
  process: ChildProcess;
  /** Output collected so far. */
  output(): string;
  /** SIGTERM, then SIGKILL after 3 s; resolves when it has exited. */
  stop(): Promise<void>;
  /** SIGKILL at once. */
  kill(): void;
}

async function stopProcess(p: ChildProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise<void>((r) => p.once("exit", () => r()));
  p.kill(signal);
  const t = setTimeout(() => p.kill("SIGKILL"), 3000);
  await exited;
  clearTimeout(t);
}

async function waitReady(p: ChildProcess, target: NbdTarget, output: () => string, what: string): Promise<void> {
  const deadline = Date.now() + 15000;
  while (Date.now() < deadline) {
    if (p.exitCode !== null || p.signalCode !== null) throw new Error(`${what} exited early: ${output()}`);
    if (target.kind === "unix" ? existsSync(target.path) : await canConnect(target.port)) return;
    await sleep(20);
  }
  throw new Error(`${what} did not come up: ${output()}`);
}

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function startPeer(t: After, cmd: string, args: string[], target: NbdTarget, exportName: string, what: string): Promise<NbdPeer> {
  const p = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
  track(p);
  let out = "";
  p.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  p.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const peer: NbdPeer = {
    target,
    exportName,
    uri: formatNbdUri(target, exportName),
    socket: target.kind === "unix" ? target.path : "",
    port: target.kind === "tcp" ? target.port : 0,
    process: p,
    output: () => out,
    stop: () => stopProcess(p),
    kill: () => {
      p.kill("SIGKILL");
    },
  };
  t.after(() => peer.stop());
  await waitReady(p, target, () => out, what);
  return peer;
}

export interface QemuNbdOptions {
  image: string;
  format?: "qcow2" | "raw";
  exportName?: string;
  /** -r (default true). */
  readOnly?: boolean;
  /** --bitmap=<name>: exported as qemu:dirty-bitmap:<name>. */
  bitmap?: string;
  /** -e: clients at once (default 4; >1 lets qemu-nbd advertise multi-conn when read-only). */
  shared?: number;
  /** -A: qemu:allocation-depth. */
  allocationDepth?: boolean;
  /** Serve over TCP on a free port instead of a unix socket. */
  tcp?: boolean;
  /** TLS: qemu-layout directory with server-cert.pem etc. */
  tlsDir?: string;
  tlsVerifyPeer?: boolean;
  extraArgs?: string[];
}

/** qemu-nbd (persistent, `-t`) on a temp unix socket. */
export async function startQemuNbd(t: TestContext, o: QemuNbdOptions): Promise<NbdPeer> {
  const exportName = o.exportName ?? "";
  let target: NbdTarget;
  const args: string[] = [];
  if (o.tcp) {
    target = { kind: "tcp", host: "127.0.0.1", port: await freePort() };
    args.push("-b", "127.0.0.1", "-p", String(target.port));
  } else {
    const dir = await tempDir(t, "vnbt-nbd-");
    target = { kind: "unix", path: join(dir, "nbd.sock") };
    args.push("-k", target.path);
  }
  args.push("-t", "-e", String(o.shared ?? 4), "-f", o.format ?? "qcow2", "-x", exportName);
  if (o.readOnly ?? true) args.push("-r");
  if (o.bitmap) args.push(`--bitmap=${o.bitmap}`);
  if (o.allocationDepth) args.push("-A");
  if (o.tlsDir) {
    args.push("--object", `tls-creds-x509,id=tls0,endpoint=server,dir=${o.tlsDir},verify-peer=${o.tlsVerifyPeer ? "on" : "off"}`, "--tls-creds", "tls0");
  }
  args.push(...(o.extraArgs ?? []), o.image);
  return startPeer(t, "qemu-nbd", args, target, exportName, "qemu-nbd");
}

export interface NbdkitOptions {
  plugin: string;
  /** Plugin and filter parameters, e.g. ["64M"] or ["size=1G", "error-pread-rate=100%"]. */
  args?: string[];
  filters?: string[];
  exportName?: string;
  readOnly?: boolean;
  tcp?: boolean;
  /** TLS: --tls=require with this qemu-layout directory. */
  tlsDir?: string;
  threads?: number;
}

/** nbdkit in the foreground on a temp unix socket (dies with the test process). */
export async function startNbdkit(t: TestContext, o: NbdkitOptions): Promise<NbdPeer> {
  const exportName = o.exportName ?? "";
  let target: NbdTarget;
  const args = ["-f", "--exit-with-parent"];
  if (o.tcp) {
    target = { kind: "tcp", host: "127.0.0.1", port: await freePort() };
    args.push("-i", "127.0.0.1", "-p", String(target.port));
  } else {
    const dir = await tempDir(t, "vnbt-nbd-");
    target = { kind: "unix", path: join(dir, "nbdkit.sock") };
    args.push("-U", target.path);
  }
  if (o.exportName !== undefined) args.push("-e", o.exportName);
  if (o.readOnly) args.push("-r");
  if (o.threads) args.push("-t", String(o.threads));
  if (o.tlsDir) args.push("--tls=require", `--tls-certificates=${o.tlsDir}`);
  for (const f of o.filters ?? []) args.push(`--filter=${f}`);
  args.push(o.plugin, ...(o.args ?? []));
  return startPeer(t, "nbdkit", args, target, exportName, "nbdkit");
}

export interface ImageWrite {
  /** qemu-io `write -P <pattern>`. */
  pattern?: number;
  /** qemu-io `write -z` (zeroes; allocated-zero in qcow2). */
  zero?: boolean;
  offset: number;
  length: number;
}

/** Creates an image in a temp dir, runs the qemu-io writes, then adds the persistent bitmaps (clean). */
export async function makeImage(
  t: TestContext,
  o: { size: number; format?: "qcow2" | "raw"; name?: string; dir?: string; writes?: ImageWrite[]; bitmaps?: string[] },
): Promise<string> {
  const dir = o.dir ?? (await tempDir(t, "vnbt-nbd-img-"));
  const format = o.format ?? "qcow2";
  const path = join(dir, o.name ?? `disk.${format}`);
  await run("qemu-img", ["create", "-q", "-f", format, path, String(o.size)]);
  if (o.writes?.length) await qemuIo(path, format, o.writes.map(writeCommand));
  for (const b of o.bitmaps ?? []) await run("qemu-img", ["bitmap", "--add", path, b]);
  return path;
}

export function writeCommand(w: ImageWrite): string {
  return w.zero ? `write -z ${w.offset} ${w.length}` : `write -P ${w.pattern ?? 0} ${w.offset} ${w.length}`;
}

/** Runs qemu-io commands on an image (or an NBD URI with format raw). */
export async function qemuIo(image: string, format: string, commands: string[]): Promise<string> {
  const args = ["-f", format];
  for (const c of commands) args.push("-c", c);
  args.push(image);
  const r = await run("qemu-io", args);
  if (/failed|error/i.test(r.stdout + r.stderr)) throw new Error(`qemu-io ${commands.join("; ")}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** `nbdinfo --json --map=<ctx> <uri>`: [{offset, length, type}]. */
export async function nbdinfoMap(uri: string, context = "base:allocation"): Promise<{ offset: number; length: number; type: number }[]> {
  const r = await run("nbdinfo", ["--json", `--map=${context}`, uri]);
  return (JSON.parse(r.stdout) as { offset: number; length: number; type: number }[]).map((e) => ({ offset: e.offset, length: e.length, type: e.type }));
}

/**
 * A throwaway CA with server and client certificates in qemu's layout (ca-cert.pem,
 * server-cert.pem, server-key.pem, client-cert.pem, client-key.pem), made by
 * scripts/make-test-certs.sh. `names` go into both certificates' subjectAltName (default
 * localhost and 127.0.0.1; the first is the server's CN). Valid for 2 days.
 */
export async function makeTlsCerts(t: After, names: string[] = []): Promise<string> {
  const dir = await tempDir(t, "vnbt-nbd-pki-");
  await run("sh", [MAKE_TEST_CERTS, "-d", "2", dir, ...names]);
  return dir;
}
