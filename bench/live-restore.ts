/**
 * Live restore benchmark (issue 17), in one run on a real Linux guest (test/helpers/linux-guest.ts,
 * TCG) whose ext4 data disk holds half its size in incompressible data, for each `--sizes`:
 *
 *   time to first line:  `virtnbdrestore --live` started → the restored guest's first console
 *                         line (MARKER), plain and lz4 sets: must not grow with the disk size
 *   copy:                --live started → the command's end (every disk complete), as throughput
 *                         of the data copied, beside
 *   normal restore:      `virtnbdrestore` of the same set (the time before a guest could boot
 *                         at all), and `qemu-img convert` of the source image to qcow2
 *
 *   node --import tsx bench/live-restore.ts [--sizes=1G,8G] [--rounds=1]
 *
 * Results: a table on stdout and bench/results/live-restore.json.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { chmod, readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { execa } from "execa";
import { createLinuxGuest } from "../test/helpers/linux-guest.js";
import { MiB } from "../test/helpers/domains.js";
import { assertOk, ourBackup, ourRestore, startOurRestore } from "../test/helpers/our-tool.js";

const arg = (name: string, dflt: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? dflt;
const parseSize = (s: string) => Number(/^(\d+)G$/i.exec(s)?.[1] ?? NaN) * 1024 * MiB;
const sizes = arg("sizes", "1G,8G").split(",").map(parseSize);
const rounds = Number(arg("rounds", "1"));

const seconds = (t0: number) => (performance.now() - t0) / 1000;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return seconds(t0);
}

async function consoleLine(log: string, pattern: RegExp, limitS = 300): Promise<void> {
  const t0 = performance.now();
  for (;;) {
    const text = await readFile(log, "latin1").catch(() => "");
    if (text.split("\n").some((l) => pattern.test(l.replace(/\r$/, "")))) return;
    if (seconds(t0) > limitS) throw new Error(`no ${pattern} in ${log}`);
    await sleep(20);
  }
}

interface LiveResult {
  firstLineS: number;
  copyS: number;
}

async function live(set: string, out: string, name: string, consoleLog: string): Promise<LiveResult> {
  rmSync(consoleLog, { force: true }); // the original guest's MARKER is in it: wait for the restored one's
  const t0 = performance.now();
  const p = startOurRestore(["-i", set, "-o", out, "--live", "-N", name, "-n"]);
  await consoleLine(consoleLog, /^MARKER /);
  const firstLineS = seconds(t0);
  assertOk(await p.result, `live restore of ${set}`);
  const copyS = seconds(t0);
  await execa("virsh", ["-q", "destroy", name], { reject: false });
  return { firstLineS, copyS };
}

interface Row {
  size: number;
  dataBytes: number;
  set: string;
  firstLineS: number;
  liveCopyS: number;
  normalRestoreS: number;
  qemuImgConvertS: number;
}

async function measureSize(size: number, work: string): Promise<Row[]> {
  const filler = size / 2;
  const g = await createLinuxGuest({ marker: `bench ${size}`, diskSize: size, fillerBytes: filler, memoryMiB: 256 });
  const rows: Row[] = [];
  try {
    await g.start();
    await g.waitForMarker(120_000);
    await g.stop();
    const image = g.dataDisk.path;
    for (const [label, extra] of [["plain", []], ["lz4", ["-z"]]] as const) {
      const set = join(work, `set-${label}-${size}`);
      assertOk(await ourBackup(["-d", g.domain.name, "-l", "copy", "-o", set, "-n", ...extra]), `backup ${label}`);
      for (let r = 0; r < rounds; r++) {
        const name = `vnbt-bench-live-${process.pid}-${r}`;
        const liveOut = join(work, `live-${label}-${size}-${r}`);
        const res = await live(set, liveOut, name, g.domain.consoleLog);
        const normalOut = join(work, `normal-${label}-${size}-${r}`);
        const normalRestoreS = await timed(async () => assertOk(await ourRestore(["-i", set, "-o", normalOut, "-n"]), "normal restore"));
        const conv = join(work, `convert-${size}-${r}.qcow2`);
        const qemuImgConvertS = await timed(() => execa("qemu-img", ["convert", "-q", "-f", "qcow2", "-O", "qcow2", image, conv]));
        rows.push({ size, dataBytes: filler, set: label, firstLineS: res.firstLineS, liveCopyS: res.copyS, normalRestoreS, qemuImgConvertS });
        for (const p of [liveOut, normalOut, conv]) rmSync(p, { recursive: true, force: true });
      }
      rmSync(set, { recursive: true, force: true });
    }
  } finally {
    await g.cleanup();
  }
  return rows;
}

async function main(): Promise<void> {
  const work = join(process.env["VNBT_TMPDIR"] ?? "/var/tmp", `vnbt-bench-live-${process.pid}`);
  mkdirSync(work, { recursive: true });
  await chmod(work, 0o755);
  const rows: Row[] = [];
  try {
    for (const size of sizes) rows.push(...(await measureSize(size, work)));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const gib = (n: number) => (n >= 1024 * MiB ? `${(n / 1024 / MiB).toFixed(0)} GiB` : `${(n / MiB).toFixed(0)} MiB`);
  const mibs = (bytes: number, s: number) => `${(bytes / MiB / s).toFixed(0)} MiB/s`;
  console.log("| disk (data) | set | first console line | live copy complete (data rate) | normal restore (data rate) | live copy / normal restore | qemu-img convert |");
  console.log("|---|---|---|---|---|---|---|");
  for (const r of rows) {
    console.log(
      `| ${gib(r.size)} (${gib(r.dataBytes)}) | ${r.set} | ${r.firstLineS.toFixed(1)} s | ${r.liveCopyS.toFixed(1)} s (${mibs(r.dataBytes, r.liveCopyS)}) | ` +
        `${r.normalRestoreS.toFixed(1)} s (${mibs(r.dataBytes, r.normalRestoreS)}) | ${(r.liveCopyS / r.normalRestoreS).toFixed(2)}× | ${r.qemuImgConvertS.toFixed(1)} s |`,
    );
  }
  const cpu = readFileSync("/proc/cpuinfo", "utf8").match(/model name\s*:\s*(.*)/)?.[1] ?? "?";
  mkdirSync("bench/results", { recursive: true });
  writeFileSync("bench/results/live-restore.json", JSON.stringify({ date: new Date().toISOString(), host: hostname(), cpu, rows }, null, 2) + "\n");
}

await main();
