/**
 * Runs on a long chain: the whole-run time of an inc with nothing changed, and of the full that
 * starts the next chain (it deletes the old checkpoints), after a chain of 1, 30 and 100
 * checkpoints (--lengths), ours beside the Python tool (Debian 1.9.15; up to --python-max, its
 * incs cost ~1.2 s each). What grows with the chain is what a daily cron job on a monthly
 * rotation pays. A throwaway TCG domain on a 1 GiB qcow2 holding 64 MiB: the fixed cost, not
 * the copy, is measured.
 *
 *   node --import tsx bench/chain-runs.ts [--lengths=1,30,100] [--rounds=3] [--python-max=30] [--before=DIR]
 *
 * Per tool and length: the chain is grown with incs (nothing changed) to the length, then
 * --rounds incs are timed (the chain grows by those, a few percent), then one full into a new
 * directory (the next chain of a rotation). Medians.
 * Results: stdout and bench/results/chain-runs.json.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { Connection } from "../src/libvirt/connection.js";
import { defineBenchDomain, measure, median, type Run } from "./lib.js";

const WORK = "/var/tmp/vnb-bench-chain-runs";
const IMAGE = join(WORK, "disk.qcow2");
const DOMAIN = "vnb-bench-chain-runs";
const arg = (n: string): string | undefined => process.argv.find((a) => a.startsWith(`--${n}=`))?.slice(n.length + 3);
const LENGTHS = (arg("lengths") ?? "1,30,100").split(",").map(Number);
const ROUNDS = Number(arg("rounds") ?? 3);
const PYTHON_MAX = Number(arg("python-max") ?? 30);
const root = new URL("..", import.meta.url).pathname;
const RESULTS = join(root, "bench/results/chain-runs.json");
const PY_ENV = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: process.env["HOME"] ?? "/root" };

interface Tool {
  name: string;
  run(level: "full" | "inc", dir: string): Promise<Run>;
}

const ours = (name: string, tree: string): Tool => ({
  name,
  run: (level, dir) => measure(process.execPath, [join(tree, "bin/virtnbdbackup.js"), "-d", DOMAIN, "-l", level, "-o", dir, "-n"]),
});
const BEFORE = arg("before");
const tools: Tool[] = [
  ours("ours", root),
  // --before=DIR: another built tree of ours (e.g. a worktree of an earlier commit) beside it.
  ...(BEFORE ? [ours("ours before", BEFORE)] : []),
  { name: "python 1.9.15", run: (level, dir) => measure("/usr/bin/virtnbdbackup", ["-d", DOMAIN, "-l", level, "-o", dir, "-n"], { env: PY_ENV }) },
];

/** The set's number of checkpoints (its `.cpt` list). */
const chainLength = (dir: string): number => (JSON.parse(readFileSync(join(dir, `${DOMAIN}.cpt`), "utf8")) as string[]).length;

async function main(): Promise<void> {
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(WORK, { recursive: true });
  execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", IMAGE, "1G"]);
  execFileSync("qemu-io", ["-f", "qcow2", "-c", "write -P 0x5a 0 64M", IMAGE], { stdio: "ignore" });
  const conn = await Connection.open("qemu:///system");
  const dom = await defineBenchDomain(conn, DOMAIN, IMAGE);
  const rows: Record<string, { seconds: number; each: number[] }> = {};
  try {
    await dom.create();
    for (const tool of tools) {
      for (const length of LENGTHS.filter((l) => tool.name.startsWith("ours") || l <= PYTHON_MAX)) {
        const dir = join(WORK, "set");
        rmSync(dir, { recursive: true, force: true });
        await tool.run("full", dir);
        while (chainLength(dir) < length) await tool.run("inc", dir);
        const incs: number[] = [];
        for (let i = 0; i < ROUNDS; i++) incs.push((await tool.run("inc", dir)).seconds);
        // The next chain in a new directory (a monthly rotation): it deletes the old checkpoints.
        const next = join(WORK, "next");
        rmSync(next, { recursive: true, force: true });
        const full = (await tool.run("full", next)).seconds;
        rmSync(next, { recursive: true, force: true });
        rows[`inc, nothing changed, chain of ${length}: ${tool.name}`] = { seconds: median(incs), each: incs };
        rows[`full after a chain of ${length + ROUNDS}: ${tool.name}`] = { seconds: full, each: [full] };
        console.log(`${tool.name.padEnd(14)} chain ${String(length).padStart(3)}: inc (nothing changed) ${median(incs).toFixed(2)} s [${incs.map((s) => s.toFixed(2)).join(", ")}], full after it ${full.toFixed(2)} s`);
      }
    }
  } finally {
    if (await dom.isActive()) await dom.destroy();
    await dom.undefine(16 /* checkpoints metadata */);
    await conn.close();
    rmSync(WORK, { recursive: true, force: true });
  }
  const cpu = (cpus()[0]?.model ?? "?").replace(/\s+\d+-Core.*$/, "");
  writeFileSync(RESULTS, JSON.stringify({ date: new Date().toISOString(), node: process.version, cpu, cores: cpus().length, rounds: ROUNDS, rows }, null, 2) + "\n");
}

await main();
