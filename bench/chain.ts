/**
 * Long chains: a full + N incrementals (default 30; each 64 MiB of scattered changes written
 * into the running domain: 64 × 1 MiB through qemu-io on its monitor) against a full of the
 * same final data (`-l copy` taken right after the last inc), on a throwaway TCG domain whose
 * 4 GiB qcow2 disk holds ~2 GiB of mixed data (half random, half text, 64 MiB regions).
 *
 *   restore:      the chain vs the copy (ours), medians of --rounds; Python 1.9.15 once each
 *   virtnbdmap:   `--listen-only` on the chain and on the copy: the time until the export
 *                 answers (nbdinfo, polled every 10 ms), and a sequential read of the whole
 *                 export (`nbdcopy … null:`, block status honoured), medians of --rounds
 *
 * The restored images of chain and copy are compared (`qemu-img compare`) once. The sets stay in
 * /var/tmp/vnb-bench-chain for reruns (rebuilt with --rebuild or when the recipe changes).
 * Results: stdout and bench/results/chain.json.
 *
 *   node --import tsx bench/chain.ts [--incs=30] [--rounds=3] [--rebuild] [--no-python]
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Connection } from "../src/libvirt/connection.js";
import { buildMixedImage, defineBenchDomain, diskDevice, measure, scatterWrites, type Run } from "./lib.js";

const WORK = "/var/tmp/vnb-bench-chain";
const DOMAIN = "vnb-bench-chain";
const arg = (n: string): string | undefined => process.argv.find((a) => a.startsWith(`--${n}=`))?.slice(n.length + 3);
const flag = (n: string): boolean => process.argv.includes(`--${n}`);
const INCS = Number(arg("incs") ?? 30);
const ROUNDS = Number(arg("rounds") ?? 3);
const PYTHON = !flag("no-python");
const PY_ENV = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: process.env["HOME"] ?? "/root" };
const RECIPE = `v1: 4GiB, 32 regions of 64MiB every 128MiB; full + ${INCS} incs of 64 x 1MiB; copy`;
const root = new URL("..", import.meta.url).pathname;
const bin = (tool: string) => join(root, "bin", `${tool}.js`);
const CHAIN = join(WORK, "chain");
const COPY = join(WORK, "copy");

/** The chain and the copy of its final data, built once per recipe. */
async function buildSets(): Promise<void> {
  const stamp = join(WORK, "sets.recipe");
  if (!flag("rebuild") && existsSync(stamp) && readFileSync(stamp, "utf8") === RECIPE) return;
  const base = join(WORK, "base.qcow2");
  await buildMixedImage(base, join(WORK, "base.recipe"), 4, 32, "v1: 4GiB, 32 regions of 64MiB every 128MiB", "2026-12-05 chain bench: the quick brown fox jumps over the lazy dog 0123456789\n");
  const image = join(WORK, "disk.qcow2");
  execFileSync("cp", ["--sparse=always", base, image]);
  execFileSync("chmod", ["0644", image]);
  for (const d of [CHAIN, COPY]) rmSync(d, { recursive: true, force: true });
  const conn = await Connection.open("qemu:///system");
  const dom = await defineBenchDomain(conn, DOMAIN, image);
  try {
    await dom.create();
    const dev = await diskDevice(dom);
    const backup = (level: string, out: string) => execFileSync("node", [bin("virtnbdbackup"), "-d", DOMAIN, "-l", level, "-o", out, "-n"], { stdio: "ignore" });
    console.log(`building the chain: full + ${INCS} incs…`);
    backup("full", CHAIN);
    for (let k = 1; k <= INCS; k++) {
      await scatterWrites(dom, dev, k);
      backup("inc", CHAIN);
    }
    backup("copy", COPY);
    writeFileSync(stamp, RECIPE);
  } finally {
    await dom.destroy().catch(() => undefined);
    await dom.undefine(16).catch(() => undefined);
    await conn.close();
    rmSync(image, { force: true });
  }
}

/** The set's data files of sda in chain order (full first, then the incs by sequence). */
function chainFiles(dir: string): string[] {
  const names = readdirSync(dir).filter((n) => /^sda\.(full|copy|inc)\..*data$/.test(n));
  const seq = (n: string) => (/\.(full|copy)\./.test(n) ? -1 : Number(/\.(\d+)\.data$/.exec(n)?.[1] ?? 0));
  return names.sort((a, b) => seq(a) - seq(b)).map((n) => join(dir, n));
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

/** One restore of `set` into `out` (emptied first), by ours or the Python tool. */
async function restoreOnce(set: string, out: string, python = false): Promise<Run> {
  rmSync(out, { recursive: true, force: true });
  const [cmd, args, env] = python ? ["/usr/bin/virtnbdrestore", [], PY_ENV] : ["node", [bin("virtnbdrestore")], process.env];
  return measure(cmd, [...args, "-i", set, "-o", out, "-n"], { env });
}

function restoredImage(dir: string): string {
  const f = readdirSync(dir).find((n) => n.endsWith(".qcow2"));
  if (!f) throw new Error(`no image restored into ${dir}`);
  return join(dir, f);
}

let nextPort = 21000 + Math.floor(Math.random() * 20000);

/** virtnbdmap on `files`: seconds until the export answers, then seconds of a whole read. */
async function mapRun(files: string[]): Promise<{ open: number; read: number }> {
  const port = nextPort++;
  const t0 = performance.now();
  const proc = spawn("node", [bin("virtnbdmap"), "--listen-only", "-p", String(port), "--nocolor", "-L", join(WORK, "virtnbdmap.log"), "-f", files.join(",")], { stdio: "ignore" });
  try {
    let open = 0;
    for (let i = 0; i < 3000 && !open; i++) {
      if (proc.exitCode !== null) throw new Error(`virtnbdmap exited with ${proc.exitCode}`);
      if (spawnSync("nbdinfo", ["--size", `nbd://127.0.0.1:${port}/sda`], { stdio: "ignore" }).status === 0) open = (performance.now() - t0) / 1000;
      else await sleep(10);
    }
    if (!open) throw new Error("virtnbdmap did not come up");
    const t1 = performance.now();
    if (spawnSync("nbdcopy", [`nbd://127.0.0.1:${port}/sda`, "null:"], { stdio: "inherit" }).status !== 0) throw new Error("nbdcopy failed");
    return { open, read: (performance.now() - t1) / 1000 };
  } finally {
    const done = new Promise((r) => proc.once("exit", r));
    proc.kill("SIGTERM");
    await done;
  }
}

async function main(): Promise<void> {
  mkdirSync(WORK, { recursive: true });
  execFileSync("chmod", ["0755", WORK]);
  await buildSets();
  const dataMiB = (set: string) => chainFiles(set).reduce((a, f) => a + Number(execFileSync("stat", ["-c", "%s", f], { encoding: "utf8" })), 0) / 2 ** 20;
  console.log(`chain: ${chainFiles(CHAIN).length} files, ${dataMiB(CHAIN).toFixed(0)} MiB; copy: ${dataMiB(COPY).toFixed(0)} MiB`);
  const rows: Record<string, { seconds: number; peakRssMiB?: number; each?: number[] }> = {};
  const keep = (name: string, runs: Run[]) => {
    rows[name] = { seconds: median(runs.map((r) => r.seconds)), peakRssMiB: Math.max(...runs.map((r) => r.peakRssMiB)), each: runs.map((r) => r.seconds) };
    console.log(`${name.padEnd(34)} ${rows[name]!.seconds.toFixed(2)} s  (${runs.map((r) => r.seconds.toFixed(2)).join(", ")}), peak RSS ${rows[name]!.peakRssMiB!.toFixed(0)} MiB`);
  };
  // Warm page cache for both (the backup wrote its files with O_DIRECT: a first restore would read the disk).
  for (const f of [...chainFiles(CHAIN), ...chainFiles(COPY)]) execFileSync("cat", [f], { stdio: ["ignore", "ignore", "inherit"] });
  const outChain = join(WORK, "restore-chain");
  const outCopy = join(WORK, "restore-copy");
  // Rotating: copy and chain alternate, so both see the same machine.
  const copyRuns: Run[] = [];
  const chainRuns: Run[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    copyRuns.push(await restoreOnce(COPY, outCopy));
    chainRuns.push(await restoreOnce(CHAIN, outChain));
  }
  keep("restore: copy (ours)", copyRuns);
  keep(`restore: full + ${INCS} incs (ours)`, chainRuns);
  execFileSync("qemu-img", ["compare", "-q", restoredImage(outCopy), restoredImage(outChain)]);
  console.log("restored chain = restored copy (qemu-img compare)");
  if (PYTHON) {
    keep("restore: copy (python 1.9.15)", [await restoreOnce(COPY, join(WORK, "restore-py"), true)]);
    keep(`restore: full + ${INCS} incs (python 1.9.15)`, [await restoreOnce(CHAIN, join(WORK, "restore-py"), true)]);
  }
  for (const d of [outChain, outCopy, join(WORK, "restore-py")]) rmSync(d, { recursive: true, force: true });
  const maps: Record<string, { open: number; read: number }[]> = { copy: [], chain: [] };
  for (let i = 0; i < ROUNDS; i++) {
    maps["copy"]!.push(await mapRun(chainFiles(COPY)));
    maps["chain"]!.push(await mapRun(chainFiles(CHAIN)));
  }
  for (const [k, runs] of Object.entries(maps)) {
    rows[`virtnbdmap open: ${k}`] = { seconds: median(runs.map((r) => r.open)), each: runs.map((r) => r.open) };
    rows[`virtnbdmap read: ${k}`] = { seconds: median(runs.map((r) => r.read)), each: runs.map((r) => r.read) };
    console.log(`virtnbdmap ${k.padEnd(6)} open ${rows[`virtnbdmap open: ${k}`]!.seconds.toFixed(2)} s, read ${rows[`virtnbdmap read: ${k}`]!.seconds.toFixed(2)} s (${runs.map((r) => `${r.open.toFixed(2)}/${r.read.toFixed(2)}`).join(", ")})`);
  }
  const ratio = (a: string, b: string) => rows[a]!.seconds / rows[b]!.seconds;
  const ratios = {
    restoreChainVsCopy: ratio(`restore: full + ${INCS} incs (ours)`, "restore: copy (ours)"),
    mapReadChainVsCopy: ratio("virtnbdmap read: copy", "virtnbdmap read: chain"),
    mapOpenChainSeconds: rows["virtnbdmap open: chain"]!.seconds,
  };
  console.log(`\nrestore chain / copy: ${ratios.restoreChainVsCopy.toFixed(2)}×; map read throughput chain / copy: ${(ratios.mapReadChainVsCopy * 100).toFixed(0)} %; map of the chain opens in ${ratios.mapOpenChainSeconds.toFixed(2)} s`);
  const host = execFileSync("sh", ["-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2; nproc"], { encoding: "utf8" }).trim().split("\n");
  mkdirSync(join(root, "bench/results"), { recursive: true });
  writeFileSync(join(root, "bench/results/chain.json"), JSON.stringify({ date: new Date().toISOString(), node: process.version, cpu: host[0]?.trim(), cores: Number(host[1]), incs: INCS, rounds: ROUNDS, rows, ratios }, null, 2));
}


await main();
