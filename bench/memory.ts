/**
 * Peak memory benchmark: the maximum resident set size (`/usr/bin/time -v`, "Maximum resident
 * set size": the largest of the process and every child it waited for, e.g. the qemu-img a
 * restore runs) of backups and restores, ours beside the Python tool (Debian 1.9.15) and
 * nbdcopy, on sparse disks of 4, 16 and 64 GiB that hold the same ~2 GiB of data (32 regions of
 * 64 MiB every 128 MiB from offset 0, alternating random and text; the rest never written), and
 * on chains of a full + N incrementals (default 30; each inc 64 MiB of scattered changes:
 * 64 × 1 MiB written into the running domain through qemu-io on its monitor).
 *
 * Per disk size, on a throwaway TCG domain `vnb-bench-mem-<size>g` (no OS; its disk only):
 *   full -z (ours; then its restore: ours, Python) · full and full -z + inc (Python) ·
 *   nbdcopy of the export to a file · full (ours; then its restore: ours, Python) · inc (ours)
 * Chains (4 GiB disk copies, domains `vnb-bench-mem-chain`, `vnb-bench-mem-chainz`): a full and
 * N incs, plain and -z, each inc measured (largest and median reported), then the restore of
 * the whole chain (ours, Python).
 *
 * Restored images are compared with the source (`qemu-img compare -U`) unless --no-compare.
 * maxrss hardly depends on the machine's load; the seconds printed beside it do.
 *
 *   node --import tsx bench/memory.ts [--sizes=4,16,64] [--incs=30] [--cases=REGEX]
 *        [--no-reference] [--no-compare] [--rounds=1] [--merge]
 *
 * --cases keeps only cases whose name matches; --no-reference skips the Python tool and
 * nbdcopy (their last figures are taken from bench/results/memory.json). --rounds=N runs each
 * measured command N times and keeps the largest maxrss. --merge keeps the other figures of
 * bench/results/memory.json (a run of some cases adds to it). The images stay in /var/tmp/vnb-bench-mem
 * for reruns (rebuilt when the recipe changes); domains, sets and restored images are removed.
 */
import { execFileSync, spawn } from "node:child_process";
import { randomFillSync } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { Connection } from "../src/libvirt/connection.js";
import type { Domain } from "../src/libvirt/domain.js";
import { buildBackupXml } from "../src/libvirt/backup-xml.js";
import { diskDevice, scatterWrites } from "./lib.js";

const MiB = 1 << 20;
const GiB = 1 << 30;
const WORK = "/var/tmp/vnb-bench-mem";
const RECIPE = "v2: 32 regions of 64MiB every 128MiB from 0, alternating random/text; sizes 4,16,64 GiB";
const PREFIX = "vnb-bench-mem";
const root = new URL("..", import.meta.url).pathname;
const arg = (n: string): string | undefined => process.argv.find((a) => a.startsWith(`--${n}=`))?.slice(n.length + 3);
const flag = (n: string): boolean => process.argv.includes(`--${n}`);
const SIZES = (arg("sizes") ?? "4,16,64").split(",").map(Number);
const INCS = Number(arg("incs") ?? 30);
const CASES = arg("cases") ? new RegExp(arg("cases")!) : null;
const REFERENCE = !flag("no-reference");
const COMPARE = !flag("no-compare");
const ROUNDS = Number(arg("rounds") ?? 1);
const MERGE = flag("merge");
const PY_ENV = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: process.env["HOME"] ?? "/root" };
const RESULTS = join(root, "bench/results/memory.json");

interface Result {
  case: string;
  tool: "ours" | "python 1.9.15" | "nbdcopy";
  maxrssMiB: number;
  seconds: number;
  /** Chains: every inc's maxrss. */
  each?: number[];
  /** Taken from an earlier run (--no-reference). */
  earlier?: boolean;
}

const results: Result[] = [];
const previous: Result[] = (() => {
  try {
    return (JSON.parse(readFileSync(RESULTS, "utf8")) as { results: Result[] }).results;
  } catch {
    return [];
  }
})();

const wanted = (name: string): boolean => !CASES || CASES.test(name);

/** Keeps `r`, replacing a figure of the same case and tool (a group of cases run once more). */
function record(r: Result): void {
  const i = results.findIndex((x) => x.case === r.case && x.tool === r.tool);
  if (i >= 0) results.splice(i, 1);
  results.push(r);
}

/** Runs `cmd` under /usr/bin/time -v; resolves with its maxrss (MiB) and wall time. */
function timeV(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ maxrssMiB: number; seconds: number }> {
  const report = join(WORK, `time.${process.pid}`);
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const child = spawn("/usr/bin/time", ["-v", "-o", report, cmd, ...args], { stdio: ["ignore", "ignore", "pipe"], env });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    child.on("exit", (code) => {
      const seconds = (performance.now() - t) / 1000;
      const text = existsSync(report) ? readFileSync(report, "utf8") : "";
      rmSync(report, { force: true });
      if (code !== 0) return reject(new Error(`${cmd} ${args.join(" ")} failed (${code}): ${stderr}${text.slice(0, 300)}`));
      const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(text);
      if (!m) return reject(new Error(`no maxrss in the report of ${cmd}`));
      resolve({ maxrssMiB: Number(m[1]) / 1024, seconds });
    });
  });
}

/** --no-reference: the reference tools' figures of the last run. */
function reuse(name: string, tool: Result["tool"]): void {
  const old = wanted(name) ? previous.find((r) => r.case === name && r.tool === tool) : undefined;
  if (old) record({ ...old, earlier: true });
}

async function measure(name: string, tool: Result["tool"], cmd: string, args: string[], env?: NodeJS.ProcessEnv, before?: () => void): Promise<Result | null> {
  if (!wanted(name)) return null;
  if (tool !== "ours" && !REFERENCE) {
    reuse(name, tool);
    return null;
  }
  let best: Result | null = null;
  for (let i = 0; i < ROUNDS; i++) {
    before?.();
    // Once more after a failure: libvirtd may be restarted by others on a shared machine.
    const r = await timeV(cmd, args, env).catch(async (e: Error) => {
      console.log(`${name} (${tool}) failed, once more in 10 s: ${e.message.split("\n")[0]!.slice(0, 200)}`);
      await new Promise((resolve) => setTimeout(resolve, 10000));
      before?.();
      return timeV(cmd, args, env);
    });
    if (!best || r.maxrssMiB > best.maxrssMiB) best = { case: name, tool, ...r };
  }
  record(best!);
  console.log(`${name.padEnd(34)} ${tool.padEnd(14)} ${best!.maxrssMiB.toFixed(1).padStart(7)} MiB  ${best!.seconds.toFixed(1).padStart(6)} s`);
  return best;
}

const ours = (tool: string, args: string[]): [string, string[]] => [process.execPath, [join(root, "bin", `${tool}.js`), ...args]];

/** The data layout every image holds in its first 4 GiB. */
async function buildBase(): Promise<void> {
  const stamp = join(WORK, "recipe");
  if (existsSync(stamp) && readFileSync(stamp, "utf8") === RECIPE && [4, 16, 64].every((s) => existsSync(imagePath(s)))) return;
  console.log("building the images (once)…");
  const raw = join(WORK, "data.raw");
  const fh = await open(raw, "w");
  await fh.truncate(4 * GiB);
  const region = Buffer.allocUnsafe(64 * MiB);
  const line = Buffer.from("2026-12-05 memory bench: the quick brown fox jumps over the lazy dog 0123456789\n");
  for (let i = 0; i < 32; i++) {
    if (i % 2 === 0) randomFillSync(region);
    else for (let at = 0; at < region.length; at += line.length) line.copy(region, at, 0, Math.min(line.length, region.length - at));
    await fh.write(region, 0, region.length, i * 128 * MiB);
  }
  await fh.close();
  for (const s of [4, 16, 64]) {
    rmSync(imagePath(s), { force: true });
    execFileSync("qemu-img", ["convert", "-q", "-f", "raw", "-O", "qcow2", raw, imagePath(s)]);
    if (s !== 4) execFileSync("qemu-img", ["resize", "-q", imagePath(s), `${s}G`]);
  }
  rmSync(raw);
  writeFileSync(stamp, RECIPE);
}

const imagePath = (sizeGiB: number) => join(WORK, `disk-${sizeGiB}g.qcow2`);

function removeBitmaps(image: string): void {
  const info = JSON.parse(execFileSync("qemu-img", ["info", "--output=json", image], { encoding: "utf8" })) as { "format-specific"?: { data?: { bitmaps?: { name: string }[] } } };
  for (const b of info["format-specific"]?.data?.bitmaps ?? []) execFileSync("qemu-img", ["bitmap", "--remove", image, b.name]);
}

/** Removes a throwaway domain (through virsh: works when the bench's own connection was lost). */
async function dropDomain(_conn: Connection | null, name: string): Promise<void> {
  const virsh = (...args: string[]) => {
    try {
      execFileSync("virsh", args, { stdio: "ignore" });
    } catch {
      /* not running, not there */
    }
  };
  virsh("destroy", name);
  virsh("undefine", name, "--checkpoints-metadata");
}

/** A running throwaway domain with `image` as its only disk; its qdev id for qemu-io. */
async function startDomain(conn: Connection, name: string, image: string): Promise<{ dom: Domain; dev: string }> {
  await dropDomain(conn, name);
  removeBitmaps(image);
  chmodSync(image, 0o644);
  const xml = `<domain type='qemu'><name>${name}</name><memory unit='MiB'>64</memory>
    <os><type arch='x86_64' machine='pc'>hvm</type></os>
    <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='${image}'/><target dev='sda' bus='sata'/></disk></devices></domain>`;
  const dom = await conn.defineXML(xml);
  started.add(name);
  await dom.create();
  return { dom, dev: await diskDevice(dom) };
}

function fresh(name: string): string {
  const d = join(WORK, name);
  rmSync(d, { recursive: true, force: true });
  return d;
}

function restoredImage(dir: string): string {
  const f = readdirSync(dir).find((n) => n.endsWith(".qcow2"));
  if (!f) throw new Error(`no image restored into ${dir}`);
  return join(dir, f);
}

/** A running domain's disk: its image file, and the device qemu-io writes to. */
interface Disk {
  dom: Domain;
  dev: string;
  image: string;
}

/**
 * The restored image holds what the source holds now. The domain has the source open (-U);
 * qemu is made to write its cached qcow2 metadata out first, or the file would look older.
 */
async function compare(source: Disk, dir: string): Promise<void> {
  if (!COMPARE) return;
  await source.dom.hmp(`qemu-io -d ${source.dev} "flush"`);
  execFileSync("qemu-img", ["compare", "-U", "-q", source.image, restoredImage(dir)]);
}

async function restoreCases(label: string, set: string, source: Disk): Promise<void> {
  const r = fresh("restore-ours");
  if (await measure(`${label} restore`, "ours", ...ours("virtnbdrestore", ["-i", set, "-o", r, "-n"]), process.env, () => rmSync(r, { recursive: true, force: true }))) await compare(source, r);
  rmSync(r, { recursive: true, force: true });
  const p = fresh("restore-py");
  await measure(`${label} restore`, "python 1.9.15", "/usr/bin/virtnbdrestore", ["-i", set, "-o", p, "-n"], PY_ENV, () => rmSync(p, { recursive: true, force: true }));
  rmSync(p, { recursive: true, force: true });
}

async function sizeCases(conn: Connection, sizeGiB: number): Promise<void> {
  const label = `${sizeGiB} GiB`;
  const image = imagePath(sizeGiB);
  const name = `${PREFIX}-${sizeGiB}g`;
  const { dom, dev } = await startDomain(conn, name, image);
  try {
    const backup = (out: string, level: string, z: boolean) => ours("virtnbdbackup", ["-d", name, "-l", level, ...(z ? ["-z"] : []), "-o", out, "-n"]);
    // -z: a full, restored by both tools.
    const outZ = fresh("out-z");
    if (wanted(`${label} full -z`) || wanted(`${label} -z restore`)) {
      const full = await measure(`${label} full -z`, "ours", ...backup(outZ, "full", true), process.env, () => rmSync(outZ, { recursive: true, force: true }));
      if (!full) execFileSync(...backup(outZ, "full", true), { stdio: "ignore" });
      await restoreCases(`${label} -z`, outZ, { dom, dev, image });
    }
    rmSync(outZ, { recursive: true, force: true });
    // The Python tool: full, full -z and an inc on that chain.
    if (REFERENCE) {
      const py = (out: string, level: string, z: boolean): [string, string[], NodeJS.ProcessEnv] => ["/usr/bin/virtnbdbackup", ["-d", name, "-l", level, ...(z ? ["-z"] : []), "-o", out, "-n"], PY_ENV];
      const pyOut = fresh("out-py");
      await measure(`${label} full`, "python 1.9.15", ...py(pyOut, "full", false), () => rmSync(pyOut, { recursive: true, force: true }));
      rmSync(pyOut, { recursive: true, force: true });
      await measure(`${label} full -z`, "python 1.9.15", ...py(pyOut, "full", true), () => rmSync(pyOut, { recursive: true, force: true }));
      if (wanted(`${label} inc`) && existsSync(pyOut)) {
        await scatterWrites(dom, dev, 1000); // the same offsets on every disk size
        await measure(`${label} inc`, "python 1.9.15", ...py(pyOut, "inc", true));
      }
      rmSync(pyOut, { recursive: true, force: true });
      if (wanted(`${label} full`)) await nbdcopy(dom, label);
    } else {
      for (const c of [`${label} full`, `${label} full -z`, `${label} inc`]) reuse(c, "python 1.9.15");
      reuse(`${label} full`, "nbdcopy");
    }
    // Plain: a full, restored by both tools, then an inc.
    const out = fresh("out");
    if (wanted(`${label} full`) || wanted(`${label} restore`) || wanted(`${label} inc`)) {
      const full = await measure(`${label} full`, "ours", ...backup(out, "full", false), process.env, () => rmSync(out, { recursive: true, force: true }));
      if (!full) execFileSync(...backup(out, "full", false), { stdio: "ignore" });
      await restoreCases(label, out, { dom, dev, image });
      await scatterWrites(dom, dev, 2000);
      await measure(`${label} inc`, "ours", ...backup(out, "inc", false));
    }
  } finally {
    await dropDomain(conn, name);
    for (const d of ["out", "out-z", "out-py", "restore-ours", "restore-py"]) rmSync(join(WORK, d), { recursive: true, force: true });
  }
}

async function nbdcopy(dom: Domain, label: string): Promise<void> {
  const socket = `/var/tmp/${PREFIX}-nbdcopy.${process.pid}.sock`; // qemu (not root) creates it
  rmSync(socket, { force: true });
  await dom.backupBegin(buildBackupXml({ server: { transport: "unix", socket }, disks: [{ name: "sda", scratchFile: join(WORK, "scratch.sda") }] }), null);
  try {
    const target = join(WORK, "nbdcopy.raw");
    await measure(`${label} full`, "nbdcopy", "nbdcopy", [`nbd+unix:///sda?socket=${socket}`, target], process.env, () => rmSync(target, { force: true }));
    rmSync(target, { force: true });
  } finally {
    await dom.abortJob();
    rmSync(socket, { force: true });
  }
}

/** A full + INCS incs on a copy of the 4 GiB disk; every inc measured, then the chain's restore. */
async function chainCases(conn: Connection, z: boolean): Promise<void> {
  const label = `chain of ${INCS} incs${z ? " -z" : ""}`;
  if (!wanted(label)) return;
  const image = join(WORK, `chain${z ? "z" : ""}.qcow2`);
  const name = `${PREFIX}-chain${z ? "z" : ""}`;
  await dropDomain(conn, name);
  rmSync(image, { force: true });
  execFileSync("cp", ["--sparse=always", imagePath(4), image]);
  const { dom, dev } = await startDomain(conn, name, image);
  const out = fresh(`out-chain${z ? "z" : ""}`);
  try {
    const backup = (level: string) => ours("virtnbdbackup", ["-d", name, "-l", level, ...(z ? ["-z"] : []), "-o", out, "-n"]);
    execFileSync(...backup("full"), { stdio: "ignore" });
    const each: Result[] = [];
    for (let k = 1; k <= INCS; k++) {
      await scatterWrites(dom, dev, k);
      const [cmd, args] = backup("inc");
      const r = await timeV(cmd, args);
      each.push({ case: `${label}: inc`, tool: "ours", ...r });
    }
    const rss = each.map((r) => r.maxrssMiB);
    const sorted = [...rss].sort((a, b) => a - b);
    const inc: Result = { case: `${label}: inc (largest)`, tool: "ours", maxrssMiB: sorted.at(-1)!, seconds: each.reduce((a, r) => a + r.seconds, 0) / each.length, each: rss };
    record(inc);
    record({ case: `${label}: inc (median)`, tool: "ours", maxrssMiB: sorted[sorted.length >> 1]!, seconds: inc.seconds });
    console.log(`${`${label}: inc`.padEnd(34)} ${"ours".padEnd(14)} ${inc.maxrssMiB.toFixed(1).padStart(7)} MiB largest, median ${sorted[sorted.length >> 1]!.toFixed(1)} MiB (first ${rss[0]!.toFixed(1)}, last ${rss.at(-1)!.toFixed(1)})`);
    await restoreCases(label, out, { dom, dev, image });
  } finally {
    await dropDomain(conn, name);
    for (const d of [out, image, join(WORK, "restore-ours"), join(WORK, "restore-py")]) rmSync(d, { recursive: true, force: true });
  }
}

/** Throwaway domains of this run, removed also when the run is stopped by a signal. */
const started = new Set<string>();
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    for (const name of started) void dropDomain(null, name);
    process.exit(128 + (sig === "SIGINT" ? 2 : 15));
  });
}

async function main(): Promise<void> {
  mkdirSync(WORK, { recursive: true });
  chmodSync(WORK, 0o755);
  await buildBase();
  // A connection per group of cases, which runs again (up to 4 times) when it fails: libvirtd
  // may be restarted by others on a shared machine, and its connection is then lost.
  const connected = async (what: string, fn: (conn: Connection) => Promise<void>): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      const c = await Connection.open("qemu:///system");
      try {
        return await fn(c);
      } catch (e) {
        if (attempt === 4) throw e;
        console.log(`${what} failed, again in 30 s: ${(e as Error).message.split("\n")[0]!.slice(0, 200)}`);
        await new Promise((resolve) => setTimeout(resolve, 30000));
      } finally {
        await c.close().catch(() => undefined);
      }
    }
  };
  const baseline = async (tool: string) => {
    const [cmd, args] = ours(tool, ["--version"]);
    await measure(`baseline: ${tool} --version`, "ours", cmd, args);
  };
  await baseline("virtnbdbackup");
  await baseline("virtnbdrestore");
  for (const s of SIZES) await connected(`${s} GiB cases`, (c) => sizeCases(c, s));
  await connected("chain", (c) => chainCases(c, false));
  await connected("chain -z", (c) => chainCases(c, true));
  if (MERGE) for (const old of previous) if (!results.some((r) => r.case === old.case && r.tool === old.tool)) results.push(old);
  printTable();
  mkdirSync(join(root, "bench/results"), { recursive: true });
  const host = execFileSync("sh", ["-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2; nproc; uname -r"], { encoding: "utf8" }).trim().split("\n");
  writeFileSync(RESULTS, JSON.stringify({ date: new Date().toISOString(), node: process.version, cpu: host[0]?.trim(), cores: Number(host[1]), kernel: host[2], results }, null, 2));
}

function printTable(): void {
  const cases = [...new Set(results.map((r) => r.case))];
  const tools: Result["tool"][] = ["ours", "python 1.9.15", "nbdcopy"];
  console.log(`\nmaxrss (MiB), /usr/bin/time -v; * = an earlier run's figure\n`);
  console.log(`| case | ${tools.join(" | ")} |`);
  console.log(`|---|${tools.map(() => "---:").join("|")}|`);
  for (const c of cases) {
    const cell = (t: Result["tool"]) => {
      const r = results.find((x) => x.case === c && x.tool === t);
      return r ? `${r.maxrssMiB.toFixed(0)}${r.earlier ? "*" : ""}` : "";
    };
    console.log(`| ${c} | ${tools.map(cell).join(" | ")} |`);
  }
}

await main();
