/**
 * NBD benchmarks, run side by side in one process:
 *
 * 1. Read throughput: qemu-nbd serves a 1 GiB fully allocated raw image (read-only,
 *    multi-conn). `nbdcopy nbd+unix:///?socket=… null:` and our client (reading everything
 *    into pool buffers and dropping the data) take turns; best and median of N runs.
 * 2. Extent enumeration: a 1 TiB qcow2 with a few allocated regions and a dirty bitmap;
 *    time to list the full and the incremental backup extents (nbdinfo --map for reference).
 *
 *   node --import tsx bench/nbd-read.ts [--runs=5] [--connections=4] [--request=4M] [--depth=16] [--size=1G]
 *
 * Results are printed and written to bench/results/nbd-read.json.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  BASE_ALLOCATION,
  collectBackupExtents,
  dirtyBitmapContext,
  NbdClient,
  type NbdTarget,
} from "../src/nbd/index.js";
import { BufferPool } from "../src/util/buffer-pool.js";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

function arg(name: string, def: string): string {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : def;
}
function size(s: string): number {
  const m = /^(\d+)([KMGT]?)$/i.exec(s);
  if (!m) throw new Error(`bad size ${s}`);
  return Number(m[1]) * ({ "": 1, K: 1024, M: MiB, G: GiB, T: 1024 * GiB } as Record<string, number>)[m[2]!.toUpperCase()]!;
}

const RUNS = Number(arg("runs", "5"));
const CONNECTIONS = Number(arg("connections", "4"));
const REQUEST = size(arg("request", "4M"));
const DEPTH = Number(arg("depth", "16"));
const SIZE = size(arg("size", "1G"));

const sh = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: "utf8", maxBuffer: 256 * MiB });

async function startQemuNbd(args: string[], socket: string): Promise<ChildProcess> {
  const p = spawn("qemu-nbd", [...args, "-k", socket], { stdio: ["ignore", "inherit", "inherit"] });
  for (let i = 0; i < 500 && !existsSync(socket); i++) await sleep(10);
  if (!existsSync(socket)) throw new Error("qemu-nbd did not start");
  return p;
}

async function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null) return;
  const done = new Promise((r) => p.once("exit", r));
  p.kill("SIGTERM");
  await done;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function timeNbdcopy(uri: string): Promise<number> {
  const t0 = process.hrtime.bigint();
  await new Promise<void>((resolve, reject) => {
    const p = spawn("nbdcopy", [uri, "null:"], { stdio: "inherit" });
    p.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`nbdcopy exited ${code}`))));
  });
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function timeOurs(target: NbdTarget, pool: BufferPool): Promise<number> {
  const t0 = process.hrtime.bigint();
  const c = await NbdClient.open({ target, exportName: "", connections: CONNECTIONS, maxBytesInFlight: REQUEST * DEPTH });
  const total = c.size;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < total) {
      const off = next;
      const n = Math.min(REQUEST, total - off);
      next += n;
      const buf = await pool.acquire();
      try {
        await c.read(off, n, buf);
      } finally {
        pool.release(buf);
      }
    }
  };
  await Promise.all(Array.from({ length: DEPTH }, worker));
  await c.disconnect();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function throughput(dir: string): Promise<Record<string, unknown>> {
  const image = join(dir, "1g.raw");
  sh("qemu-img", ["create", "-q", "-f", "raw", image, String(SIZE)]);
  // Fully allocated, non-zero data.
  sh("qemu-io", ["-f", "raw", "-c", `write -P 0xa7 0 ${SIZE}`, image]);
  sh("sh", ["-c", `cat '${image}' > /dev/null`]);
  const socket = join(dir, "read.sock");
  const q = await startQemuNbd(["-r", "-t", "-e", "16", "-f", "raw", "-x", "", image], socket);
  const uri = `nbd+unix:///?socket=${socket}`;
  const target: NbdTarget = { kind: "unix", path: socket };
  const pool = BufferPool.fixed(REQUEST, DEPTH);
  try {
    // Warm-up (page cache, pool buffers).
    await timeNbdcopy(uri);
    await timeOurs(target, pool);
    const nbdcopy: number[] = [];
    const ours: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      nbdcopy.push(await timeNbdcopy(uri));
      ours.push(await timeOurs(target, pool));
    }
    const mbps = (t: number): number => SIZE / t / 1e6;
    const r = {
      bytes: SIZE,
      connections: CONNECTIONS,
      requestSize: REQUEST,
      depth: DEPTH,
      nbdcopySeconds: nbdcopy,
      oursSeconds: ours,
      nbdcopyBestMBps: Math.round(mbps(Math.min(...nbdcopy))),
      oursBestMBps: Math.round(mbps(Math.min(...ours))),
      nbdcopyMedianMBps: Math.round(mbps(median(nbdcopy))),
      oursMedianMBps: Math.round(mbps(median(ours))),
      ratioBest: Number((Math.min(...nbdcopy) / Math.min(...ours)).toFixed(3)),
      ratioMedian: Number((median(nbdcopy) / median(ours)).toFixed(3)),
    };
    console.log(
      `read ${SIZE / GiB} GiB from qemu-nbd: nbdcopy best ${r.nbdcopyBestMBps} MB/s (median ${r.nbdcopyMedianMBps}), ` +
        `ours best ${r.oursBestMBps} MB/s (median ${r.oursMedianMBps}); ratio ours/nbdcopy best ${r.ratioBest}, median ${r.ratioMedian}`,
    );
    return r;
  } finally {
    await stop(q);
    rmSync(image, { force: true });
  }
}

async function extents(dir: string): Promise<Record<string, unknown>> {
  const image = join(dir, "1t.qcow2");
  const TiB = 1024 * GiB;
  sh("qemu-img", ["create", "-q", "-f", "qcow2", image, String(TiB)]);
  const writes: string[] = [];
  for (let i = 0; i < 8; i++) writes.push("-c", `write -P ${i + 1} ${i * 128 * GiB + 7 * MiB} ${3 * MiB}`);
  sh("qemu-io", ["-f", "qcow2", ...writes, image]);
  sh("qemu-img", ["bitmap", "--add", image, "b0"]);
  sh("qemu-io", ["-f", "qcow2", "-c", `write -P 0x77 ${512 * GiB} ${MiB}`, "-c", `write -P 0x78 ${TiB - 64 * MiB} ${2 * MiB}`, image]);
  const socket = join(dir, "ext.sock");
  const q = await startQemuNbd(["-r", "-t", "-e", "4", "-f", "qcow2", "-x", "sda", "--bitmap=b0", image], socket);
  const target: NbdTarget = { kind: "unix", path: socket };
  const dirtyContext = dirtyBitmapContext("b0");
  try {
    const t0 = process.hrtime.bigint();
    const c = await NbdClient.open({ target, exportName: "sda", metaContexts: [BASE_ALLOCATION, dirtyContext] });
    const full = await collectBackupExtents(c);
    const t1 = process.hrtime.bigint();
    const inc = await collectBackupExtents(c, { dirtyContext });
    const t2 = process.hrtime.bigint();
    await c.disconnect();
    const n0 = process.hrtime.bigint();
    sh("nbdinfo", ["--map", `nbd+unix:///sda?socket=${socket}`]);
    const n1 = process.hrtime.bigint();
    const r = {
      diskBytes: TiB,
      fullSeconds: Number(t1 - t0) / 1e9,
      fullExtents: full.count,
      fullDataBytes: full.dataBytes,
      incSeconds: Number(t2 - t1) / 1e9,
      incExtents: inc.count,
      incDataBytes: inc.dataBytes,
      nbdinfoMapSeconds: Number(n1 - n0) / 1e9,
    };
    console.log(
      `extents of a 1 TiB qcow2: full ${r.fullExtents} extents (${r.fullDataBytes} data bytes) in ${r.fullSeconds.toFixed(3)} s ` +
        `(incl. connect); inc ${r.incExtents} extents (${r.incDataBytes} bytes) in ${r.incSeconds.toFixed(3)} s; ` +
        `nbdinfo --map ${r.nbdinfoMapSeconds.toFixed(3)} s`,
    );
    return r;
  } finally {
    await stop(q);
    rmSync(image, { force: true });
  }
}

const dir = mkdtempSync(join(process.env["VNBT_BENCH_DIR"] ?? tmpdir(), "vnbt-bench-nbd-"));
try {
  const only = arg("only", "");
  const results = {
    date: new Date().toISOString(),
    throughput: only === "extents" ? null : await throughput(dir),
    extents: only === "read" ? null : await extents(dir),
  };
  const out = new URL("./results/", import.meta.url).pathname;
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, "nbd-read.json"), JSON.stringify(results, null, 2) + "\n");
} finally {
  rmSync(dir, { recursive: true, force: true });
}
