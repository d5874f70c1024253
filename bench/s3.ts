/**
 * Object storage benchmark against the local Ceph RGW (scripts/ceph-rgw.sh start), side by side
 * in one run on one throwaway TCG domain with a 2 GiB qcow2 disk holding 1 GiB of mixed data
 * (half random, half text, in 64 MiB regions with holes between them):
 *
 *   backup:   ours `-o s3://…` (plain, -z) | s3cmd put of the same data file (made once by
 *             our backup into a local folder) | ours into a local folder (what the network costs)
 *   restore:  ours `-i s3://…` (plain, -z) | s3cmd get of the same data file | ours from the
 *             local folder
 *
 * Peak RSS is sampled from /proc every 20 ms. Each case runs --rounds times (default 3) in
 * rotating order; medians go to stdout and bench/results/s3.json.
 *
 *   scripts/ceph-rgw.sh start && node --import tsx bench/s3.ts [--rounds=3]
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Connection } from "../src/libvirt/connection.js";
import { buildMixedImage, defineBenchDomain, measure as measureRun, MiB, type Run } from "./lib.js";

const WORK = "/var/tmp/vnb-bench-s3";
const IMAGE = join(WORK, "disk.qcow2");
const RECIPE = "v1: 2GiB, 16 regions of 64MiB every 128MiB, alternating random/text";
const DOMAIN = "vnb-bench-s3";
const ROUNDS = Number(process.argv.find((a) => a.startsWith("--rounds="))?.slice(9) ?? 3);
const ENDPOINT = process.env["S3_ENDPOINT"] ?? "http://127.0.0.1:7480";
const KEYS = { AWS_ACCESS_KEY_ID: process.env["AWS_ACCESS_KEY_ID"] ?? "VNBDCIACCESSKEY00001", AWS_SECRET_ACCESS_KEY: process.env["AWS_SECRET_ACCESS_KEY"] ?? "virtnbdbackup-ci-secret-key-000000000001" };
const ENV = { ...process.env, ...KEYS, AWS_REGION: "us-east-1", AWS_ENDPOINT_URL: ENDPOINT };
const BUCKET = `vnb-bench-${process.pid}`;

const buildImage = () => buildMixedImage(IMAGE, join(WORK, "recipe"), 2, 16, RECIPE, "2026-12-05 s3 bench: the quick brown fox jumps over the lazy dog 0123456789\n");

const measure = (cmd: string, args: string[]) => measureRun(cmd, args, { env: ENV });
const ours = (tool: string, args: string[]) => measure("node", [join(process.cwd(), "bin", `${tool}.js`), ...args]);

function s3cmdConfig(): string {
  const path = join(WORK, "s3cmd.cfg");
  const host = new URL(ENDPOINT).host;
  writeFileSync(path, `[default]\naccess_key = ${KEYS.AWS_ACCESS_KEY_ID}\nsecret_key = ${KEYS.AWS_SECRET_ACCESS_KEY}\nhost_base = ${host}\nhost_bucket = ${host}\nuse_https = False\nsignature_v2 = False\n`);
  return path;
}

async function main(): Promise<void> {
  mkdirSync(WORK, { recursive: true });
  execFileSync("chmod", ["0755", WORK]);
  await buildImage();
  execFileSync("chmod", ["0644", IMAGE]);
  const cfg = s3cmdConfig();
  const s3cmd = (args: string[]) => measure("s3cmd", ["-c", cfg, "--no-progress", "--quiet", ...args]);
  execFileSync("s3cmd", ["-c", cfg, "mb", `s3://${BUCKET}`]);
  const conn = await Connection.open("qemu:///system");
  const dom = await defineBenchDomain(conn, DOMAIN, IMAGE);
  await dom.create();
  const results: Record<string, Run> = {};
  try {
    // The reference data file, and a warm page cache for everyone.
    const local = join(WORK, "local-ref");
    rmSync(local, { recursive: true, force: true });
    await ours("virtnbdbackup", ["-d", DOMAIN, "-l", "copy", "-o", local, "-n", "--nocolor"]);
    const dataFile = join(local, "sda.copy.data");
    const dataMiB = statSync(dataFile).size / MiB;
    let n = 0;
    // The OSD keeps objects in memory (memstore): each backup's objects go once measured, except
    // round 0's sets, which the restore cases read.
    const drop = (prefix: string) => execFileSync("s3cmd", ["-c", cfg, "--quiet", "del", "--recursive", `s3://${BUCKET}/${prefix}/`]);
    const upload = async (name: string, run: (prefix: string) => Promise<Run>) => {
      const prefix = `${name}-${n++}`;
      const r = await run(prefix);
      if (!["plain-0", "lz4-1"].includes(prefix)) drop(prefix);
      return r;
    };
    const backupCases: [string, () => Promise<Run>][] = [
      ["backup: ours -o s3://", () => upload("plain", (p) => ours("virtnbdbackup", ["-d", DOMAIN, "-l", "copy", "-o", `s3://${BUCKET}/${p}`, "-n", "--nocolor"]))],
      ["backup: ours -z -o s3://", () => upload("lz4", (p) => ours("virtnbdbackup", ["-d", DOMAIN, "-l", "copy", "-z", "-o", `s3://${BUCKET}/${p}`, "-n", "--nocolor"]))],
      ["backup: s3cmd put (same data file)", () => upload("s3cmd", (p) => s3cmd(["put", dataFile, `s3://${BUCKET}/${p}/sda.copy.data`]))],
      ["backup: ours -o local folder", async () => {
        const dir = join(WORK, `local-${n++}`);
        const r = await ours("virtnbdbackup", ["-d", DOMAIN, "-l", "copy", "-o", dir, "-n", "--nocolor"]);
        rmSync(dir, { recursive: true, force: true });
        return r;
      }],
    ];
    await rounds(backupCases, results);
    // Round 0 runs the cases in order: its sets are plain-0 and lz4-1; the reference object goes up once more.
    const plainSet = `s3://${BUCKET}/plain-0`;
    const lz4Set = `s3://${BUCKET}/lz4-1`;
    execFileSync("s3cmd", ["-c", cfg, "--quiet", "put", dataFile, `s3://${BUCKET}/ref/sda.copy.data`]);
    const out = (name: string) => {
      const d = join(WORK, `restore-${name}`);
      rmSync(d, { recursive: true, force: true });
      return d;
    };
    const restoreCases: [string, () => Promise<Run>][] = [
      ["restore: ours -i s3://", () => ours("virtnbdrestore", ["-i", plainSet, "-o", out("plain"), "-n", "--nocolor"])],
      ["restore: ours -i s3:// (-z set)", () => ours("virtnbdrestore", ["-i", lz4Set, "-o", out("lz4"), "-n", "--nocolor"])],
      ["restore: s3cmd get (same data file)", () => s3cmd(["get", "--force", `s3://${BUCKET}/ref/sda.copy.data`, join(out("s3cmd") + ".data")])],
      ["restore: ours -i local folder", () => ours("virtnbdrestore", ["-i", local, "-o", out("local"), "-n", "--nocolor"])],
    ];
    await rounds(restoreCases, results);
    report(results, dataMiB);
  } finally {
    await dom.destroy().catch(() => undefined);
    await dom.undefine(16).catch(() => undefined);
    execFileSync("s3cmd", ["-c", cfg, "rb", "--recursive", "--force", `s3://${BUCKET}`], { stdio: "ignore" });
    for (const d of execFileSync("ls", [WORK], { encoding: "utf8" }).split("\n")) if (/^(local|restore|local-ref)/.test(d)) rmSync(join(WORK, d), { recursive: true, force: true });
    await conn.close();
  }
}

async function rounds(cases: [string, () => Promise<Run>][], results: Record<string, Run>): Promise<void> {
  const runs = new Map<string, Run[]>(cases.map(([name]) => [name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (let k = 0; k < cases.length; k++) {
      const [name, fn] = cases[(k + round) % cases.length]!;
      runs.get(name)!.push(await fn());
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  for (const [name, rs] of runs) results[name] = { seconds: median(rs.map((r) => r.seconds)), peakRssMiB: Math.max(...rs.map((r) => r.peakRssMiB)), code: 0 };
}

function report(results: Record<string, Run>, dataMiB: number): void {
  const rows = Object.entries(results).map(([name, r]) => `| ${name} | ${r.seconds.toFixed(2)} s | ${(dataMiB / r.seconds).toFixed(0)} MiB/s | ${r.peakRssMiB.toFixed(0)} MiB |`);
  const ratio = (a: string, b: string) => (results[a]!.seconds / results[b]!.seconds).toFixed(2);
  console.log(`data file: ${dataMiB.toFixed(0)} MiB; medians of ${ROUNDS}`);
  console.log("| case | time | rate (data file) | peak RSS |\n|---|---|---|---|\n" + rows.join("\n"));
  console.log(`ours backup / s3cmd put: ${ratio("backup: ours -o s3://", "backup: s3cmd put (same data file)")}×; ours restore / s3cmd get: ${ratio("restore: ours -i s3://", "restore: s3cmd get (same data file)")}×`);
  mkdirSync("bench/results", { recursive: true });
  writeFileSync("bench/results/s3.json", JSON.stringify({ date: new Date().toISOString(), machine: `${execFileSync("nproc", { encoding: "utf8" }).trim()} cores`, dataMiB, rounds: ROUNDS, results }, null, 2));
}

await main();
