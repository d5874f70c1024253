/**
 * Remote backup over a slow link: a full backup in remote mode (`-U qemu+ssh://…`, libvirt's
 * pull-mode job serving the disk over NBD on TCP) of a throwaway TCG domain with a 4 GiB qcow2
 * disk holding 2 GiB of mixed data, ours beside the Python tool (Debian 1.9.15) and, for the
 * data phase, `nbdcopy` of the same kind of job's export to a file, over
 *
 *   loopback   every connection straight to 127.0.0.1
 *   proxy 0    every connection through the delay proxy (bench/delay-proxy.c) with no delay:
 *              what the proxy itself costs
 *   delay      through the proxy with --delay ms each way (default 10: a 20 ms round trip)
 *
 * The "remote" hypervisor is this machine: libvirtd behind a private sshd on 127.0.0.1:S
 * (test/helpers/remote.ts). Each run of a tool gets its own mount and UTS namespace (unshare):
 * there, /etc/hosts names this machine (the host name the remote libvirt reports, which both
 * tools connect their NBD client to) 127.0.0.2 when proxied, and the host name differs (the
 * Python tool takes a qemu+ssh URI as remote only when libvirt's host name is not its own). So
 * libvirt binds the job's NBD server to 127.0.0.1:P (its own resolution) while the tools connect
 * to 127.0.0.2:P, where the proxy listens; the libvirt connection (ssh to `<host>:S`), our ssh
 * ControlMaster and the Python tool's paramiko session (always port 22) go through it too. No
 * change to either tool, nothing host-wide but a listener on 127.0.0.1:22 in loopback mode
 * (paramiko's fixed port, forwarded to the private sshd).
 *
 * The proxy is a small C program, bench/delay-proxy.c, run in a process of its own and compiled
 * by gcc into the work directory when missing or older than its source (the Node proxy it
 * replaces used ~2 s of CPU per 2 GiB moved, on 2 cores the tool and qemu need). Its raw
 * throughput (2 GiB from a socket to a sink through it, with no delay and with the delay) is
 * measured first, beside the same copy on loopback.
 * Its per-route counts (connections, bytes, turns ≈ 2 × round trips waited for) are kept for
 * one run of each tool at the delay.
 *
 *   node --import tsx bench/remote-delay.ts [--rounds=3] [--warmup=1] [--delay=10] [--tools=ours,python,nbdcopy]
 *        [--modes=loopback,proxy0,delay] [--merge] [--raw-only]
 *
 * Medians of --rounds runs per case, the cases of a round in rotating order, after --warmup
 * rounds of every case that are not counted; beside the ratios of the medians, the median of
 * each round's own ratio (the machine's speed drifts by ±20 % over minutes; a round's cases
 * share its moment). Results go to
 * stdout and bench/results/remote-delay.json (--merge keeps the cases not run this time).
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { copyFileSync, chmodSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, connect } from "node:net";
import { hostname } from "node:os";
import { join } from "node:path";
import { Connection } from "../src/libvirt/connection.js";
import { buildBackupXml } from "../src/libvirt/backup-xml.js";
import type { Domain } from "../src/libvirt/domain.js";
import { freePorts, startRemoteHypervisor, type RemoteHypervisor } from "../test/helpers/remote.js";
import { buildMixedImage, defineBenchDomain, measure, median, MiB, type Run } from "./lib.js";

const WORK = "/var/tmp/vnbt-remote-bench";
const IMAGE = join(WORK, "disk.qcow2");
const RECIPE = "v1: 4GiB, 32 regions of 64MiB every 128MiB, alternating random/text";
const DOMAIN = "vnbt-remote-bench";
const DATA_MIB = 2048;
const root = new URL("..", import.meta.url).pathname;
const RESULTS = join(root, "bench/results/remote-delay.json");
const arg = (n: string): string | undefined => process.argv.find((a) => a.startsWith(`--${n}=`))?.slice(n.length + 3);
const ROUNDS = Number(arg("rounds") ?? 3);
/** Rounds run first and not counted (the very first run of a bench was up to 2× the others: cold caches, first logins). */
const WARMUP = Number(arg("warmup") ?? 1);
const DELAY = Number(arg("delay") ?? 10);
const TOOLS = (arg("tools") ?? "ours,python,nbdcopy").split(",");
const MODES = (arg("modes") ?? "loopback,proxy0,delay").split(",") as Mode[];
const PY_ENV = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: process.env["HOME"] ?? "/root" };
const HOST = hostname();
const PROXIED = "127.0.0.2";

type Mode = "loopback" | "proxy0" | "delay";
/** The proxy's counts per route, and its process's CPU time. */
type ProxyStats = RouteStats | { route: string; cpuSeconds: number };
interface Setup {
  hv: RemoteHypervisor;
  /** The bench domain, through the local libvirt (nbdcopy's job). */
  dom: Domain;
  nbdPort: number;
  /** HOME of the Python tool: its paramiko session finds the private sshd's key in ~/.ssh. */
  pyHome: string;
  pyPath: string;
}
interface Case {
  name: string;
  tool: string;
  mode: Mode;
  run(): Promise<Run>;
}

/** Where a route listens and where it forwards to. */
interface ProxyRoute {
  listenHost: string;
  listenPort: number;
  toHost: string;
  toPort: number;
}

/**
 * What went through one route: connections, bytes each way, and turns (a chunk going the other
 * way than the connection's previous one: a request/answer exchange is two turns, so turns / 2
 * counts the round trips that wait for the link's delay; pipelined traffic turns more often).
 */
interface RouteStats {
  route: string;
  connections: number;
  bytesUp: number;
  bytesDown: number;
  turns: number;
}

const PROXY_SOURCE = join(root, "bench/delay-proxy.c");
const PROXY_BINARY = join(WORK, "delay-proxy");
let proxyBuilt = false;

/** bench/delay-proxy.c compiled into WORK, once per bench run and only when the source is newer. */
function buildProxy(): string {
  if (proxyBuilt) return PROXY_BINARY;
  if (!existsSync(PROXY_BINARY) || statSync(PROXY_BINARY).mtimeMs < statSync(PROXY_SOURCE).mtimeMs) {
    execFileSync("gcc", ["-O2", "-Wall", "-Wextra", "-pthread", "-o", PROXY_BINARY, PROXY_SOURCE], { stdio: "inherit" });
  }
  proxyBuilt = true;
  return PROXY_BINARY;
}

/** The delay proxy (bench/delay-proxy.c) in a process of its own; `stop()` ends it and returns its counts. */
async function spawnProxy(routes: ProxyRoute[], delayMs: number): Promise<{ stop(): Promise<ProxyStats[]> }> {
  const args = [String(delayMs), ...routes.map((r) => `${r.listenHost}:${r.listenPort}=${r.toHost}:${r.toPort}`)];
  const child: ChildProcess = spawn(buildProxy(), args, { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  await new Promise<void>((resolve, reject) => {
    const poll = setInterval(() => {
      if (out.includes("ready\n")) {
        clearInterval(poll);
        resolve();
      }
    }, 20);
    child.once("exit", (code) => {
      clearInterval(poll);
      reject(new Error(`delay proxy exited (${code})`));
    });
  });
  return {
    async stop() {
      const exited = new Promise((r) => child.once("exit", r));
      process.kill(child.pid!, "SIGTERM");
      await exited;
      const line = out.split("\n").find((l) => l.startsWith("stats "));
      return line ? (JSON.parse(line.slice(6)) as ProxyStats[]) : [];
    },
  };
}

/**
 * The proxy's own throughput: `mib` MiB sent by a server to a client through it (or straight:
 * `delayMs` null), the way NBD replies go; and the proxy process's CPU seconds for it.
 */
async function rawThroughput(delayMs: number | null, mib: number): Promise<{ mibPerSecond: number; proxyCpuSeconds?: number }> {
  const [sourcePort, proxyPort] = [await freePorts(), await freePorts()];
  const chunk = Buffer.alloc(4 * MiB, 0x5a);
  const source = createServer((s) => {
    let sent = 0;
    const pump = () => {
      while (sent < mib) {
        sent += 4;
        if (!s.write(chunk)) return void s.once("drain", pump);
      }
      s.end();
    };
    s.on("error", () => undefined);
    pump();
  });
  await new Promise<void>((r) => source.listen(sourcePort, "127.0.0.1", () => r()));
  const proxy = delayMs === null ? null : await spawnProxy([{ listenHost: PROXIED, listenPort: proxyPort, toHost: "127.0.0.1", toPort: sourcePort }], delayMs);
  const t = performance.now();
  let got = 0;
  await new Promise<void>((resolve, reject) => {
    const c = connect(proxy ? { host: PROXIED, port: proxyPort } : { host: "127.0.0.1", port: sourcePort });
    c.on("error", reject);
    c.on("data", (d: Buffer) => (got += d.length));
    c.on("end", () => resolve());
  });
  const seconds = (performance.now() - t) / 1000;
  const stats = await proxy?.stop();
  source.close();
  if (got !== mib * MiB) throw new Error(`raw copy: ${got} bytes arrived, not ${mib * MiB}`);
  const cpu = stats?.find((s): s is { route: string; cpuSeconds: number } => "cpuSeconds" in s);
  return { mibPerSecond: mib / seconds, proxyCpuSeconds: cpu?.cpuSeconds };
}

/** Where the tools' names resolve to in their namespace, and which proxy routes a mode needs. */
function modeRoutes(s: Setup, mode: Mode): { hosts: string; routes: ProxyRoute[]; delayMs: number } {
  const S = s.hv.sshd.port;
  const P = s.nbdPort;
  if (mode === "loopback") return { hosts: "127.0.0.1", routes: [{ listenHost: "127.0.0.1", listenPort: 22, toHost: "127.0.0.1", toPort: S }], delayMs: 0 };
  const routes = [
    { listenHost: PROXIED, listenPort: P, toHost: "127.0.0.1", toPort: P },
    { listenHost: PROXIED, listenPort: S, toHost: "127.0.0.1", toPort: S },
    { listenHost: PROXIED, listenPort: 22, toHost: "127.0.0.1", toPort: S },
  ];
  return { hosts: PROXIED, routes, delayMs: mode === "delay" ? DELAY : 0 };
}

/** `cmd` in a mount and UTS namespace of its own where this machine's name resolves to `address`. */
function inNamespace(address: string, cmd: string, args: string[]): [string, string[]] {
  const hosts = join(WORK, `hosts.${address}`);
  writeFileSync(hosts, `127.0.0.1 localhost\n${address} ${HOST}\n`);
  const script = `mount --bind '${hosts}' /etc/hosts && hostname vnbt-remote-client && exec "$@"`;
  return ["unshare", ["--mount", "--uts", "--propagation", "private", "sh", "-c", script, "sh", cmd, ...args]];
}

function cases(s: Setup): Case[] {
  const uri = `qemu+ssh://root@${HOST}:${s.hv.sshd.port}/system?keyfile=${s.hv.sshd.keyFile}&no_verify=1&no_tty=1`;
  const out = (name: string) => {
    const d = join(WORK, `out-${name}`);
    rmSync(d, { recursive: true, force: true });
    return d;
  };
  const all: Case[] = [];
  for (const mode of MODES) {
    const { hosts } = modeRoutes(s, mode);
    const common = ["-U", uri, "-d", DOMAIN, "-l", "full", "-n", "-P", String(s.nbdPort)];
    if (TOOLS.includes("ours")) {
      const [cmd, args] = inNamespace(hosts, process.execPath, [join(root, "bin/virtnbdbackup.js"), ...common, "--ssh-private-key", s.hv.sshd.keyFile, "-v", "-o", ""]);
      all.push({ name: `ours ${mode}`, tool: "ours", mode, run: () => measure(cmd, withOut(args, out("ours")), { env: s.hv.env, logFile: join(WORK, `ours-${mode}.log`) }) });
    }
    if (TOOLS.includes("python")) {
      const [cmd, args] = inNamespace(hosts, "/usr/bin/virtnbdbackup", [...common, "--ssh-user", "root", "-o", ""]);
      all.push({ name: `python 1.9.15 ${mode}`, tool: "python 1.9.15", mode, run: () => measure(cmd, withOut(args, out("py")), { env: { ...PY_ENV, PATH: s.pyPath, HOME: s.pyHome }, logFile: join(WORK, `python-${mode}.log`) }) });
    }
    if (TOOLS.includes("nbdcopy")) all.push({ name: `nbdcopy ${mode}`, tool: "nbdcopy", mode, run: () => nbdcopyRun(s, hosts) });
  }
  return all;
}

/**
 * The reference for the data phase: `nbdcopy` (its defaults: multi-conn when the server offers
 * it, 64 requests in flight) from the same kind of job's NBD server on TCP to a file, through
 * `address` (the proxy, or loopback). The job is started and stopped through the local libvirt,
 * outside the clock: the whole time is data phase.
 */
async function nbdcopyRun(s: Setup, address: string): Promise<Run> {
  const scratch = join(WORK, "nbdcopy.scratch");
  rmSync(scratch, { force: true });
  await s.dom.backupBegin(buildBackupXml({ server: { tls: false, name: "127.0.0.1", port: s.nbdPort }, disks: [{ name: "sda", scratchFile: scratch }] }), null);
  const target = join(WORK, "nbdcopy.raw");
  try {
    rmSync(target, { force: true });
    const r = await measure("nbdcopy", [`nbd://${address}:${s.nbdPort}/sda`, target]);
    return { ...r, transferSeconds: r.seconds };
  } finally {
    rmSync(target, { force: true });
    await s.dom.abortJob();
  }
}

/** The args with the empty `-o` value filled in (a fresh output directory per run). */
const withOut = (args: string[], dir: string): string[] => args.map((a, i) => (a === "" && args[i - 1] === "-o" ? dir : a));

interface CaseResult {
  tool: string;
  mode: Mode;
  seconds: number;
  mibPerSecond: number;
  transferSeconds?: number;
  peakRssMiB: number;
  each: number[];
  /** The data phase of each round (tools that report it). */
  eachData?: number[];
  /** The bench run these rounds come from: rounds pair up only within one run. */
  runAt: string;
}

const RUN_AT = new Date().toISOString();

/** Every case ROUNDS times, rotating; each run with its mode's proxy (started and stopped around it). */
async function runCases(s: Setup, list: Case[], routeStats: Record<string, ProxyStats[]>): Promise<Record<string, CaseResult>> {
  const runs = new Map<string, Run[]>(list.map((c) => [c.name, []]));
  for (let round = -WARMUP; round < ROUNDS; round++) {
    for (let k = 0; k < list.length; k++) {
      const c = list[(k + Math.max(round, 0)) % list.length]!;
      const m = modeRoutes(s, c.mode);
      const proxy = await spawnProxy(m.routes, m.delayMs);
      try {
        const r = await c.run();
        if (round >= 0) runs.get(c.name)!.push(r);
        console.log(`  ${c.name.padEnd(26)} ${r.seconds.toFixed(2).padStart(6)} s${r.transferSeconds !== undefined ? ` (data ${r.transferSeconds.toFixed(2)} s)` : ""}  ${r.peakRssMiB.toFixed(0)} MiB${round < 0 ? "  (warm-up, not counted)" : ""}`);
      } finally {
        const st = await proxy.stop();
        if (round === 0) routeStats[c.name] = st;
      }
    }
  }
  const results: Record<string, CaseResult> = {};
  for (const c of list) {
    const rs = runs.get(c.name)!;
    const transfers = rs.map((r) => r.transferSeconds).filter((t): t is number => t !== undefined);
    const seconds = median(rs.map((r) => r.seconds));
    results[c.name] = {
      tool: c.tool,
      mode: c.mode,
      seconds,
      mibPerSecond: DATA_MIB / seconds,
      transferSeconds: transfers.length ? median(transfers) : undefined,
      peakRssMiB: Math.max(...rs.map((r) => r.peakRssMiB)),
      each: rs.map((r) => r.seconds),
      eachData: transfers.length === rs.length ? transfers : undefined,
      runAt: RUN_AT,
    };
  }
  return results;
}

/** The private sshd, the ssh wrapper on PATH (private known_hosts), the Python tool's HOME with the key. */
async function setUp(after: (() => Promise<void> | void)[], dom: Domain): Promise<Setup> {
  const hv = await startRemoteHypervisor({ after: (fn) => after.push(fn) }, { sftp: true });
  if (!hv) throw new Error("no sshd (or not root): the remote bench needs /usr/sbin/sshd");
  const pyHome = join(WORK, "pyhome");
  rmSync(pyHome, { recursive: true, force: true });
  mkdirSync(join(pyHome, ".ssh"), { recursive: true, mode: 0o700 });
  copyFileSync(hv.sshd.keyFile, join(pyHome, ".ssh/id_ed25519"));
  chmodSync(join(pyHome, ".ssh/id_ed25519"), 0o600);
  const wrapperDir = hv.env["PATH"]!.split(":")[0]!;
  return { hv, dom, nbdPort: await freePorts(), pyHome, pyPath: `${wrapperDir}:${PY_ENV.PATH}` };
}

interface Ratios {
  /** Ratios of the medians: loopback / delay (wall, data phase). */
  wall: number;
  data?: number;
  /**
   * Medians of each round's own ratio (the cases of a round ran minutes apart at most, so a
   * machine that is slower for a while slows both): loopback / delay, proxy-no-delay / delay.
   */
  pairedWall?: number;
  pairedData?: number;
  pairedWallOfProxy0?: number;
  pairedDataOfProxy0?: number;
}

/** The median of round i's `of(a)` / `of(b)`, when both come from the same run with the same rounds. */
function paired(a: CaseResult, b: CaseResult, of: (c: CaseResult) => number[] | undefined): number | undefined {
  const [x, y] = [of(a), of(b)];
  if (!x || !y || x.length === 0 || x.length !== y.length || a.runAt !== b.runAt) return undefined;
  return median(x.map((v, i) => v / y[i]!));
}

function report(results: Record<string, CaseResult>, raw: Record<string, number>, rawCpu: Record<string, number>, routeStats: Record<string, ProxyStats[]>): void {
  const previous = (() => {
    try {
      return JSON.parse(readFileSync(RESULTS, "utf8")) as { results: Record<string, CaseResult> };
    } catch {
      return null;
    }
  })();
  const merged = process.argv.includes("--merge") && previous ? { ...previous.results, ...results } : results;
  const ratios: Record<string, Ratios> = {};
  for (const tool of new Set(Object.values(merged).map((r) => r.tool))) {
    const of = (mode: Mode) => Object.values(merged).find((r) => r.tool === tool && r.mode === mode);
    const [lo, p0, de] = [of("loopback"), of("proxy0"), of("delay")];
    if (!lo || !de) continue;
    const r: Ratios = {
      wall: lo.seconds / de.seconds,
      data: lo.transferSeconds && de.transferSeconds ? lo.transferSeconds / de.transferSeconds : undefined,
      pairedWall: paired(lo, de, (c) => c.each),
      pairedData: paired(lo, de, (c) => c.eachData),
      pairedWallOfProxy0: p0 ? paired(p0, de, (c) => c.each) : undefined,
      pairedDataOfProxy0: p0 ? paired(p0, de, (c) => c.eachData) : undefined,
    };
    ratios[tool] = r;
    const pct = (x: number | undefined) => (x === undefined ? "–" : `${(100 * x).toFixed(0)} %`);
    console.log(`${tool}: at ${2 * DELAY} ms RTT keeps ${pct(r.wall)} of its loopback throughput (wall)${r.data ? `, ${pct(r.data)} (data phase)` : ""}`);
    if (r.pairedWall !== undefined) {
      console.log(`  round by round (median of each round's ratio), wall / data phase: of loopback ${pct(r.pairedWall)} / ${pct(r.pairedData)}; of the proxy with no delay ${pct(r.pairedWallOfProxy0)} / ${pct(r.pairedDataOfProxy0)}`);
    }
  }
  const doc = { date: new Date().toISOString(), machine: "2 cores", dataMiB: DATA_MIB, rounds: ROUNDS, warmup: WARMUP, rttMs: 2 * DELAY, rawThroughputMiBs: raw, rawProxyCpuSeconds: rawCpu, results: merged, ratios, routeStats };
  writeFileSync(RESULTS, JSON.stringify(doc, null, 2) + "\n");
}

async function main(): Promise<void> {
  mkdirSync(WORK, { recursive: true });
  chmodSync(WORK, 0o755);
  await buildMixedImage(IMAGE, join(WORK, "recipe"), 4, 32, RECIPE, "2026-12-05 remote bench: the quick brown fox jumps over the lazy dog 0123456789\n");
  chmodSync(IMAGE, 0o644);
  const raw: Record<string, number> = {};
  const rawCpu: Record<string, number> = {};
  for (const [name, d] of [["loopback, no proxy", null], ["proxy, no delay", 0], [`proxy, ${DELAY} ms each way`, DELAY]] as const) {
    const r = await rawThroughput(d, 2048);
    raw[name] = r.mibPerSecond;
    if (r.proxyCpuSeconds !== undefined) rawCpu[name] = r.proxyCpuSeconds;
    console.log(`raw 2 GiB socket copy, ${name.padEnd(24)} ${r.mibPerSecond.toFixed(0).padStart(5)} MiB/s${r.proxyCpuSeconds !== undefined ? `  (proxy CPU ${r.proxyCpuSeconds.toFixed(2)} s)` : ""}`);
  }
  if (process.argv.includes("--raw-only")) return;
  const after: (() => Promise<void> | void)[] = [];
  const conn = await Connection.open("qemu:///system");
  const dom = await defineBenchDomain(conn, DOMAIN, IMAGE);
  try {
    const s = await setUp(after, dom);
    await dom.create();
    const routeStats: Record<string, ProxyStats[]> = {};
    const results = await runCases(s, cases(s), routeStats);
    for (const [name, r] of Object.entries(results)) {
      console.log(`${name.padEnd(26)} ${r.seconds.toFixed(2).padStart(6)} s  ${r.mibPerSecond.toFixed(0).padStart(5)} MiB/s  peak RSS ${r.peakRssMiB.toFixed(0)} MiB${r.transferSeconds ? `  (data phase ${r.transferSeconds.toFixed(2)} s)` : ""}`);
    }
    report(results, raw, rawCpu, routeStats);
  } finally {
    if (await dom.isActive().catch(() => false)) await dom.destroy().catch(() => undefined);
    await dom.undefine(16).catch(() => undefined);
    for (const fn of after.reverse()) await Promise.resolve(fn()).catch(() => undefined);
    await conn.close();
    // pyhome holds a copy of the private sshd's client key.
    for (const d of ["out-ours", "out-py", "pyhome"]) rmSync(join(WORK, d), { recursive: true, force: true });
  }
}

await main();
