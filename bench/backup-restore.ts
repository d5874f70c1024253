/**
 * Backup and restore benchmark, side by side in one run on one throwaway TCG domain with a
 * 4 GiB qcow2 disk holding ~2 GiB of mixed data (half random, half text, in 64 MiB regions
 * with holes between them):
 *
 *   full backup:        ours | Python 1.9.15 (Debian) | upstream 2.47 (if --upstream=DIR) |
 *                       nbdcopy reading the same pull-mode export into a file (plain, and
 *                       with --flush: durable at exit, as our backup files are)
 *   full backup, -z:    ours | Python 1.9.15 | upstream 2.47
 *   restore (full):     ours (qemu-img reading the files; and through our NBD server) |
 *                       Python 1.9.15 | qemu-img convert of the source image to qcow2
 *                       (plain: left in the page cache; -t writeback: synced at the end, as
 *                       our restored images are)
 *   restore (full -z):  ours (NBD server: lz4) | Python 1.9.15
 *
 * Peak RSS is sampled from /proc every 20 ms. Results go to stdout and bench/results/.
 *
 * Each case runs --rounds times (default 3) in rotating order after the image was read once
 * (warm page cache for everyone) and after --warmup rounds that are not counted (default 1: the
 * first run of each case here was 1.3-1.6x the others); medians are reported.
 *
 *   node --import tsx bench/backup-restore.ts [--upstream=/path/to/virtnbdbackup-source] [--rounds=3] [--warmup=1]
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Connection } from "../src/libvirt/connection.js";
import { buildBackupXml } from "../src/libvirt/backup-xml.js";
import { buildMixedImage, defineBenchDomain, measure, MiB, type Run } from "./lib.js";

const WORK = "/var/tmp/vnb-bench";
const IMAGE = join(WORK, "disk.qcow2");
const RECIPE = "v1: 4GiB, 32 regions of 64MiB every 128MiB, alternating random/text";
const DOMAIN = "vnb-bench";
const arg = (n: string): string | undefined => process.argv.find((a) => a.startsWith(`--${n}=`))?.slice(n.length + 3);
const UPSTREAM = arg("upstream");
const ROUNDS = Number(arg("rounds") ?? 3);
const WARMUP = Number(arg("warmup") ?? 1);
const PY_ENV = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: process.env["HOME"] ?? "/root" };

const buildImage = () => buildMixedImage(IMAGE, join(WORK, "recipe"), 4, 32, RECIPE, "2026-11-26 backup bench: the quick brown fox jumps over the lazy dog 0123456789\n");

const ours = (tool: string) => ["node", [join(process.cwd(), "bin", `${tool}.js`)]] as const;

function upstreamCmd(tool: string): [string, string[], NodeJS.ProcessEnv] | null {
  if (!UPSTREAM) return null;
  return ["/usr/bin/python3", [join(UPSTREAM, tool)], { ...PY_ENV, PYTHONPATH: UPSTREAM }];
}

async function main(): Promise<void> {
  mkdirSync(WORK, { recursive: true });
  execFileSync("chmod", ["0755", WORK]);
  await buildImage();
  execFileSync("chmod", ["0644", IMAGE]);
  const conn = await Connection.open("qemu:///system");
  const dom = await defineBenchDomain(conn, DOMAIN, IMAGE);
  const results: Record<string, Run & { dataMiB: number }> = {};
  const out = (name: string) => {
    const d = join(WORK, `out-${name}`);
    rmSync(d, { recursive: true, force: true });
    return d;
  };
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  /** Runs every case WARMUP times (not counted), then ROUNDS times in rotating order (same conditions for all); keeps medians. */
  async function rounds(cases: [string, () => Promise<Run>][]): Promise<void> {
    const runs = new Map<string, Run[]>(cases.map(([n]) => [n, []]));
    for (let round = -WARMUP; round < ROUNDS; round++) {
      for (let k = 0; k < cases.length; k++) {
        const [name, fn] = cases[(k + Math.max(0, round)) % cases.length]!;
        const run = await fn();
        if (round >= 0) runs.get(name)!.push(run);
      }
    }
    for (const [name, rs] of runs) {
      const transfers = rs.map((r) => r.transferSeconds).filter((t): t is number => t !== undefined);
      const r: Run = {
        seconds: median(rs.map((x) => x.seconds)),
        peakRssMiB: Math.max(...rs.map((x) => x.peakRssMiB)),
        code: 0,
        transferSeconds: transfers.length ? median(transfers) : undefined,
      };
      results[name] = { ...r, dataMiB: DATA };
      const phase = r.transferSeconds !== undefined ? `  (data phase ${r.transferSeconds.toFixed(2)} s, ${(DATA / r.transferSeconds).toFixed(0)} MiB/s)` : "";
      console.log(`${name.padEnd(30)} ${r.seconds.toFixed(2).padStart(6)} s  ${(DATA / r.seconds).toFixed(0).padStart(5)} MiB/s  peak RSS ${r.peakRssMiB.toFixed(0).padStart(3)} MiB${phase}  [${rs.map((x) => x.seconds.toFixed(2)).join(", ")}]`);
    }
  }
  const DATA = 2048;
  try {
    await dom.create();
    execFileSync("sh", ["-c", `cat '${IMAGE}' > /dev/null`]); // same warm page cache for everyone
    const [node, oursBackup] = ours("virtnbdbackup");
    const up = upstreamCmd("virtnbdbackup");
    const socket = `/var/tmp/vnb-bench-nbdcopy.${process.pid}.sock`;
    // Our backup fsyncs its files before it reports success; `--flush` makes nbdcopy do the same.
    const nbdcopy = async (flush: boolean): Promise<Run> => {
      rmSync(socket, { force: true });
      await dom.backupBegin(buildBackupXml({ server: { transport: "unix", socket }, disks: [{ name: "sda", scratchFile: join(WORK, "scratch.sda") }] }), null);
      try {
        const target = join(WORK, "nbdcopy.raw");
        rmSync(target, { force: true });
        const r = await measure("nbdcopy", [...(flush ? ["--flush"] : []), `nbd+unix:///sda?socket=${socket}`, target]);
        rmSync(target, { force: true });
        return r;
      } finally {
        await dom.abortJob();
      }
    };
    const full: [string, () => Promise<Run>][] = [
      ["full: ours", () => measure(node, [...oursBackup, "-d", DOMAIN, "-l", "full", "-o", out("ours"), "-n", "-v"])],
      ["full: python 1.9.15", () => measure("/usr/bin/virtnbdbackup", ["-d", DOMAIN, "-l", "full", "-o", out("py"), "-n"], { env: PY_ENV })],
      ["full: nbdcopy → file", () => nbdcopy(false)],
      ["full: nbdcopy --flush → file", () => nbdcopy(true)],
    ];
    if (up) full.push(["full: upstream 2.47", () => measure(up[0], [...up[1], "-d", DOMAIN, "-l", "full", "-o", out("up"), "-n"], { env: up[2] })]);
    await rounds(full);
    const compressed: [string, () => Promise<Run>][] = [
      ["full -z: ours", () => measure(node, [...oursBackup, "-d", DOMAIN, "-l", "full", "-z", "-o", out("ours-z"), "-n", "-v"])],
      ["full -z: python 1.9.15", () => measure("/usr/bin/virtnbdbackup", ["-d", DOMAIN, "-l", "full", "-z", "-o", out("py-z"), "-n"], { env: PY_ENV })],
    ];
    if (up) compressed.push(["full -z: upstream 2.47", () => measure(up[0], [...up[1], "-d", DOMAIN, "-l", "full", "-z", "-o", out("up-z"), "-n"], { env: up[2] })]);
    await rounds(compressed);
    // The fixed cost: an inc with nothing changed (the domain has no OS: nothing writes), on a
    // chain of a full; one tool after the other (a full of one removes the other's checkpoints).
    const incDir = join(WORK, "inc-chain");
    for (const [tool, cmd, args, env] of [["ours", node, oursBackup, process.env], ["python 1.9.15", "/usr/bin/virtnbdbackup", [], PY_ENV]] as const) {
      rmSync(incDir, { recursive: true, force: true });
      await measure(cmd, [...args, "-d", DOMAIN, "-l", "full", "-o", incDir, "-n"], { env });
      await rounds([[`inc, nothing changed: ${tool}`, () => measure(cmd, [...args, "-d", DOMAIN, "-l", "inc", "-o", incDir, "-n"], { env })]]);
    }
    rmSync(incDir, { recursive: true, force: true });
    await dom.destroy();

    // Restore of our full backup with each tool, and qemu-img convert of the source image.
    const set = join(WORK, "restore-set");
    const setZ = join(WORK, "restore-set-z");
    for (const [from, to] of [["out-ours", set], ["out-ours-z", setZ]] as const) {
      rmSync(to, { recursive: true, force: true });
      execFileSync("cp", ["-a", join(WORK, from), to]);
    }
    const [, oursRestore] = ours("virtnbdrestore");
    await rounds([
      // qemu-img reads an uncompressed set itself; -z sets (and the forced NBD case) go through our NBD server.
      ["restore: ours", () => measure(node, [...oursRestore, "-i", set, "-o", out("r-ours"), "-n"])],
      ["restore: ours, via NBD", () => measure(node, [...oursRestore, "-i", set, "-o", out("r-ours-nbd"), "-n"], { env: { ...process.env, VIRTNBD_RESTORE_ENGINE: "convert-nbd" } })],
      ["restore -z set: ours", () => measure(node, [...oursRestore, "-i", setZ, "-o", out("r-ours-z"), "-n"])],
      ["restore -z set: python 1.9.15", () => measure("/usr/bin/virtnbdrestore", ["-i", setZ, "-o", out("r-py-z"), "-n"], { env: PY_ENV })],
      ["restore: python 1.9.15", () => measure("/usr/bin/virtnbdrestore", ["-i", set, "-o", out("r-py"), "-n"], { env: PY_ENV })],
      [
        "restore: qemu-img convert",
        () => {
          const d = out("r-convert");
          mkdirSync(d, { recursive: true });
          return measure("qemu-img", ["convert", "-f", "qcow2", "-O", "qcow2", IMAGE, join(d, "disk.qcow2")]);
        },
      ],
      [
        // Ours syncs the image before it gets its final name; plain convert leaves it in the page cache.
        "restore: qemu-img convert -t writeback (synced)",
        () => {
          const d = out("r-convert-sync");
          mkdirSync(d, { recursive: true });
          return measure("qemu-img", ["convert", "-t", "writeback", "-f", "qcow2", "-O", "qcow2", IMAGE, join(d, "disk.qcow2")]);
        },
      ],
    ]);
    for (const r of ["r-ours", "r-ours-nbd", "r-ours-z"]) execFileSync("qemu-img", ["compare", "-q", IMAGE, join(WORK, `out-${r}`, "disk.qcow2")]);
    rmSync(set, { recursive: true, force: true });
    rmSync(setZ, { recursive: true, force: true });

    const r = (a: string, b: string) => (results[b]!.seconds / results[a]!.seconds).toFixed(2);
    console.log(`\nratios of medians over ${ROUNDS} rounds (>1 means ours is faster):`);
    console.log(`  full vs python 1.9.15:        ${r("full: ours", "full: python 1.9.15")}×`);
    if (up) console.log(`  full vs upstream 2.47:        ${r("full: ours", "full: upstream 2.47")}×`);
    for (const c of ["full: nbdcopy → file", "full: nbdcopy --flush → file"]) {
      const label = `full vs ${c.slice(6, -7)}:`.padEnd(30);
      console.log(`  ${label}${r("full: ours", c)}× whole run, ${(results[c]!.seconds / results["full: ours"]!.transferSeconds!).toFixed(2)}× data phase`);
    }
    const fixed = (name: string) => results[name]!.seconds - results[name]!.transferSeconds!;
    console.log(`  fixed cost (whole run − data phase): full ${fixed("full: ours").toFixed(2)} s, -z ${fixed("full -z: ours").toFixed(2)} s; an inc with nothing changed ${results["inc, nothing changed: ours"]!.seconds.toFixed(2)} s (python 1.9.15 ${results["inc, nothing changed: python 1.9.15"]!.seconds.toFixed(2)} s)`);
    console.log(`  full -z vs nbdcopy → file:    ${(results["full -z: ours"]!.seconds / results["full: nbdcopy → file"]!.seconds).toFixed(2)}× the time (whole run)`);
    console.log(`  full -z vs python 1.9.15:     ${r("full -z: ours", "full -z: python 1.9.15")}×`);
    if (up) console.log(`  full -z vs upstream 2.47:     ${r("full -z: ours", "full -z: upstream 2.47")}×`);
    console.log(`  restore vs python 1.9.15:     ${r("restore: ours", "restore: python 1.9.15")}× (-z set: ${r("restore -z set: ours", "restore -z set: python 1.9.15")}×)`);
    console.log(`  restore vs qemu-img convert:  ${r("restore: ours", "restore: qemu-img convert")}× (synced: ${r("restore: ours", "restore: qemu-img convert -t writeback (synced)")}×; via NBD: ${r("restore: ours, via NBD", "restore: qemu-img convert")}×)`);
    const sizes = Object.fromEntries(["ours", "py", "ours-z", "py-z"].map((n) => [n, statSize(join(WORK, `out-${n}`, "sda.full.data"))]));
    console.log(`  full backup file sizes (MiB): ${JSON.stringify(sizes)}`);
    mkdirSync("bench/results", { recursive: true });
    writeFileSync("bench/results/backup-restore.json", JSON.stringify({ date: new Date().toISOString(), results, sizes }, null, 2));
  } finally {
    if (await dom.isActive()) await dom.destroy().catch(() => undefined);
    for (const cp of await dom.listAllCheckpoints().catch(() => [])) await cp.delete(2 /* metadata only */).catch(() => undefined);
    await dom.undefine(16).catch(() => undefined);
    await conn.close();
    for (const n of ["ours", "py", "up", "ours-z", "py-z", "up-z", "r-ours", "r-ours-nbd", "r-ours-z", "r-py", "r-py-z", "r-convert", "r-convert-sync"]) rmSync(join(WORK, `out-${n}`), { recursive: true, force: true });
  }
}

function statSize(p: string): number {
  try {
    return Math.round(statSync(p).size / MiB);
  } catch {
    return -1;
  }
}

await main();
