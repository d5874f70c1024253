/**
 * Several disks benchmark: a throwaway TCG domain with two 4 GiB qcow2 disks, each holding
 * ~1 GiB of mixed data (16 regions of 64 MiB every 128 MiB, alternating random and text), backed
 * up in full one disk at a time (`-w 1`) and both at once (`-w 2`), beside the Python tool
 * (Debian 1.9.15, same `-w`) and nbdcopy copying the job's two exports one after another and
 * both at once (the export's own ceiling: qemu serves NBD from its main loop).
 *
 * Two groups, each on its own domain:
 *   local  `vnbt-disks-local`: the images on the local disk, in the page cache (warm for all).
 *   slow   `vnbt-disks-slow`: each image on its own slow store: nbdkit (`--filter=rate
 *          --filter=delay`: --rate bits/s, --rdelay per read) mounted as a file by nbdfuse, the
 *          domain's disk on that file with cache='none' (as for network storage).
 * Ours runs plain and with `-z`; the Python tool plain.
 *
 * Each run records its wall time, throughput (2048 MiB of data / wall time), the tool's user+sys
 * CPU and maxrss (`/usr/bin/time`: the process and the children it waited for), and the CPU
 * qemu (and, slow group, nbdkit + nbdfuse) used meanwhile (/proc/<pid>/stat before and after).
 * Cases run --rounds times (default 3) in rotating order; medians are reported.
 *
 *   node --import tsx bench/multi-disk.ts [--groups=local,slow] [--rounds=3] [--cases=REGEX]
 *        [--rate=1G] [--rdelay=10ms] [--merge]
 *
 * --merge keeps the other figures of bench/results/multi-disk.json. The images stay in
 * /var/tmp/vnbt-disks-bench for reruns; domains, mounts, nbdkit servers and sets are removed.
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Connection } from "../src/libvirt/connection.js";
import type { Domain } from "../src/libvirt/domain.js";
import { buildBackupXml } from "../src/libvirt/backup-xml.js";
import { buildMixedImage, defineBenchDomain, type BenchDiskOptions } from "./lib.js";

const WORK = "/var/tmp/vnbt-disks-bench";
const RECIPE = "v1: 4GiB, 16 regions of 64MiB every 128MiB, alternating random/text";
const DATA_MiB = 2048;
const root = new URL("..", import.meta.url).pathname;
const arg = (n: string): string | undefined => process.argv.find((a) => a.startsWith(`--${n}=`))?.slice(n.length + 3);
const GROUPS = (arg("groups") ?? "local,slow").split(",");
const ROUNDS = Number(arg("rounds") ?? 3);
const CASES = arg("cases") ? new RegExp(arg("cases")!) : null;
const RATE = arg("rate") ?? "1G";
const RDELAY = arg("rdelay") ?? "10ms";
const PY_ENV = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: process.env["HOME"] ?? "/root" };
const RESULTS = join(root, "bench/results/multi-disk.json");
const TICK = 100; // USER_HZ
const DISKS = ["sda", "sdb"];

/** One run: wall time, the tool's CPU and maxrss, and the CPU of the other side meanwhile. */
interface Sample {
  seconds: number;
  toolCpu: number;
  maxrssMiB: number;
  qemuCpu: number;
  storageCpu: number;
}

interface Result extends Sample {
  group: string;
  case: string;
  mibps: number;
  each: number[];
}

/** Which processes serve the data: qemu, and (slow group) the stores. */
interface Side {
  qemu: number;
  storage: number[];
}

const cpuOf = (pid: number): number => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / TICK; // utime, stime (fields 14, 15)
};

/** Runs one command under /usr/bin/time; its wall time, user+sys and maxrss. */
function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ seconds: number; cpu: number; maxrssMiB: number }> {
  const report = join(WORK, `time.${process.pid}.${Math.random().toString(36).slice(2)}`);
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const child = spawn("/usr/bin/time", ["-f", "%U %S %M", "-o", report, cmd, ...args], { stdio: ["ignore", "ignore", "pipe"], env });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-3000)));
    child.on("exit", (code) => {
      const seconds = (performance.now() - t) / 1000;
      const text = existsSync(report) ? readFileSync(report, "utf8").trim().split("\n").pop()! : "";
      rmSync(report, { force: true });
      if (code !== 0) return reject(new Error(`${cmd} ${args.join(" ")} failed (${code}): ${stderr}`));
      const [u, s, m] = text.split(" ").map(Number);
      resolve({ seconds, cpu: u! + s!, maxrssMiB: m! / 1024 });
    });
  });
}

/** `work` measured with the CPU the serving side used meanwhile. */
async function sampled(side: Side, work: () => Promise<{ seconds: number; cpu: number; maxrssMiB: number }>): Promise<Sample> {
  const before = { qemu: cpuOf(side.qemu), storage: side.storage.reduce((a, p) => a + cpuOf(p), 0) };
  const r = await work();
  return {
    seconds: r.seconds,
    toolCpu: r.cpu,
    maxrssMiB: r.maxrssMiB,
    qemuCpu: cpuOf(side.qemu) - before.qemu,
    storageCpu: side.storage.reduce((a, p) => a + cpuOf(p), 0) - before.storage,
  };
}

function outDir(name: string): string {
  const d = join(WORK, `out-${name.replace(/[^a-z0-9]+/gi, "-")}`);
  rmSync(d, { recursive: true, force: true });
  return d;
}

/** nbdcopy of the job's exports into files, one after another or all at once (durable at exit, as our files are). */
async function nbdcopy(dom: Domain, parallel: boolean): Promise<{ seconds: number; cpu: number; maxrssMiB: number }> {
  const socket = `/var/tmp/vnbt-disks-nbdcopy.${process.pid}.sock`; // qemu (not root) binds it
  rmSync(socket, { force: true });
  await dom.backupBegin(buildBackupXml({ server: { transport: "unix", socket }, disks: DISKS.map((name) => ({ name, scratchFile: join(WORK, `scratch.${name}`) })) }), null);
  try {
    const copy = (disk: string) => {
      const target = join(WORK, `nbdcopy.${disk}.raw`);
      rmSync(target, { force: true });
      return timed("nbdcopy", ["--flush", `nbd+unix:///${disk}?socket=${socket}`, target]);
    };
    const t = performance.now();
    const runs = parallel ? await Promise.all(DISKS.map(copy)) : await DISKS.reduce(async (acc, d) => [...(await acc), await copy(d)], Promise.resolve([] as Awaited<ReturnType<typeof copy>>[]));
    return { seconds: (performance.now() - t) / 1000, cpu: runs.reduce((a, r) => a + r.cpu, 0), maxrssMiB: Math.max(...runs.map((r) => r.maxrssMiB)) };
  } finally {
    await dom.abortJob();
    for (const d of DISKS) rmSync(join(WORK, `nbdcopy.${d}.raw`), { force: true });
  }
}

type Case = [string, () => Promise<{ seconds: number; cpu: number; maxrssMiB: number }>];

function cases(group: string, dom: Domain, name: string): Case[] {
  const ours = (w: number, z: boolean): Case => {
    const label = `ours${z ? " -z" : ""} -w ${w}`;
    return [label, () => timed(process.execPath, [join(root, "bin/virtnbdbackup.js"), "-d", name, "-l", "full", ...(z ? ["-z"] : []), "-w", String(w), "-o", outDir(label), "-n"])];
  };
  const py = (w: number): Case => {
    const label = `python 1.9.15 -w ${w}`;
    return [label, () => timed("/usr/bin/virtnbdbackup", ["-d", name, "-l", "full", "-w", String(w), "-o", outDir(label), "-n"], PY_ENV)];
  };
  const all: Case[] = [ours(1, false), ours(2, false), py(1), py(2), ["nbdcopy one after another", () => nbdcopy(dom, false)], ["nbdcopy both at once", () => nbdcopy(dom, true)]];
  all.push(ours(1, true), ours(2, true));
  return all.filter(([c]) => !CASES || CASES.test(`${group} ${c}`));
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Every case ROUNDS times in rotating order (same conditions for all); medians. */
async function rounds(group: string, side: Side, list: Case[]): Promise<Result[]> {
  const runs = new Map<string, Sample[]>(list.map(([n]) => [n, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (let k = 0; k < list.length; k++) {
      const [name, fn] = list[(k + round) % list.length]!;
      runs.get(name)!.push(await sampled(side, fn));
    }
  }
  const out: Result[] = [];
  for (const [name, rs] of runs) {
    const m = (f: (s: Sample) => number) => median(rs.map(f));
    const r: Result = { group, case: name, seconds: m((s) => s.seconds), mibps: 0, toolCpu: m((s) => s.toolCpu), maxrssMiB: Math.max(...rs.map((s) => s.maxrssMiB)), qemuCpu: m((s) => s.qemuCpu), storageCpu: m((s) => s.storageCpu), each: rs.map((s) => Number(s.seconds.toFixed(2))) };
    r.mibps = DATA_MiB / r.seconds;
    out.push(r);
    const storage = side.storage.length ? `  storage ${r.storageCpu.toFixed(1).padStart(5)} s` : "";
    console.log(`${group.padEnd(6)} ${name.padEnd(26)} ${r.seconds.toFixed(2).padStart(6)} s ${r.mibps.toFixed(0).padStart(5)} MiB/s  cpu: tool ${r.toolCpu.toFixed(1).padStart(5)} s  qemu ${r.qemuCpu.toFixed(1).padStart(5)} s${storage}  maxrss ${r.maxrssMiB.toFixed(0).padStart(4)} MiB  [${r.each.join(", ")}]`);
  }
  return out;
}

/** A slow store for `image`: nbdkit with rate and delay filters, mounted as a file by nbdfuse. */
async function slowStore(image: string, tag: string, stops: (() => void)[]): Promise<{ file: string; pids: number[] }> {
  const sock = join(WORK, `nbdkit-${tag}.sock`);
  const mnt = join(WORK, `mnt-${tag}`);
  mkdirSync(mnt, { recursive: true });
  rmSync(sock, { force: true }); // a socket a killed server left
  const nbdkitPid = join(WORK, `nbdkit-${tag}.pid`);
  rmSync(nbdkitPid, { force: true });
  // In the foreground, as our child: reaped when it ends (PID 1 here reaps no orphans).
  const kit = spawn("nbdkit", ["-f", "-U", sock, "-P", nbdkitPid, "--filter=rate", "--filter=delay", "file", image, `rate=${RATE}`, `rdelay=${RDELAY}`], { stdio: "ignore" });
  stops.push(() => kit.kill());
  for (let i = 0; i < 100 && !existsSync(nbdkitPid); i++) await new Promise((r) => setTimeout(r, 50));
  const fusePid = join(WORK, `nbdfuse-${tag}.pid`);
  rmSync(fusePid, { force: true });
  spawn("nbdfuse", ["-P", fusePid, "-o", "allow_other", join(mnt, "disk.qcow2"), "--unix", sock], { stdio: "ignore", detached: true }).unref();
  for (let i = 0; i < 100 && !existsSync(fusePid); i++) await new Promise((r) => setTimeout(r, 50));
  stops.unshift(() => execFileSync("umount", [mnt])); // before nbdkit: it waits for its client to go
  return { file: join(mnt, "disk.qcow2"), pids: [kit.pid!, Number(readFileSync(fusePid, "utf8"))] };
}

async function runGroup(conn: Connection, group: string, images: string[]): Promise<Result[]> {
  const name = `vnbt-disks-${group}`;
  const stops: (() => void)[] = [];
  let dom: Domain | null = null;
  try {
    let files = images;
    let storage: number[] = [];
    let o: BenchDiskOptions = {};
    if (group === "slow") {
      const stores = await Promise.all(images.map((img, i) => slowStore(img, DISKS[i]!, stops)));
      files = stores.map((s) => s.file);
      storage = stores.flatMap((s) => s.pids);
      o = { cache: "none", relabel: false };
    } else for (const img of images) execFileSync("sh", ["-c", `cat '${img}' > /dev/null`]); // warm page cache for all
    dom = await defineBenchDomain(conn, name, files, o);
    await dom.create();
    const qemu = Number(readFileSync(`/run/libvirt/qemu/${name}.pid`, "utf8"));
    return await rounds(group, { qemu, storage }, cases(group, dom, name));
  } finally {
    for (const a of [["destroy", name], ["undefine", name, "--checkpoints-metadata"]]) {
      try {
        execFileSync("virsh", a, { stdio: "ignore" });
      } catch {
        /* not running, not there */
      }
    }
    for (const stop of stops) {
      try {
        stop();
      } catch {
        /* gone */
      }
    }
  }
}

function summary(all: Result[]): void {
  const find = (g: string, c: string) => all.find((r) => r.group === g && r.case === c);
  console.log("\n-w 2 vs -w 1 (throughput ratio of medians):");
  for (const g of GROUPS) {
    for (const [label, one, two] of [
      ["ours", "ours -w 1", "ours -w 2"],
      ["ours -z", "ours -z -w 1", "ours -z -w 2"],
      ["python 1.9.15", "python 1.9.15 -w 1", "python 1.9.15 -w 2"],
      ["nbdcopy", "nbdcopy one after another", "nbdcopy both at once"],
    ] as const) {
      const a = find(g, one);
      const b = find(g, two);
      if (a && b) console.log(`  ${g.padEnd(6)} ${label.padEnd(14)} ${(a.seconds / b.seconds).toFixed(2)}×  (${a.mibps.toFixed(0)} → ${b.mibps.toFixed(0)} MiB/s)`);
    }
  }
}

async function main(): Promise<void> {
  mkdirSync(WORK, { recursive: true });
  execFileSync("chmod", ["0755", WORK]);
  const images = DISKS.map((d) => join(WORK, `${d}.qcow2`));
  for (const [i, img] of images.entries()) {
    await buildMixedImage(img, `${img}.recipe`, 4, 16, RECIPE, `2026-12-05 multi-disk bench, disk ${i}: the quick brown fox jumps over the lazy dog\n`);
    execFileSync("chmod", ["0644", img]);
  }
  const previous: Result[] = process.argv.includes("--merge") && existsSync(RESULTS) ? (JSON.parse(readFileSync(RESULTS, "utf8")) as { results: Result[] }).results : [];
  const conn = await Connection.open("qemu:///system");
  const fresh: Result[] = [];
  try {
    for (const g of GROUPS) fresh.push(...(await runGroup(conn, g, images)));
  } finally {
    await conn.close();
    for (const d of DISKS) rmSync(join(WORK, `scratch.${d}`), { force: true });
    execFileSync("sh", ["-c", `rm -rf '${WORK}'/out-*`]);
  }
  const all = [...previous.filter((p) => !fresh.some((f) => f.group === p.group && f.case === p.case)), ...fresh];
  summary(all);
  mkdirSync(join(root, "bench/results"), { recursive: true });
  writeFileSync(RESULTS, JSON.stringify({ date: new Date().toISOString(), machine: "2-core VM, AMD EPYC", rate: RATE, rdelay: RDELAY, results: all }, null, 2));
}

await main();
