/**
 * virtnbdmap read benchmark, side by side with the original (Debian 1.9.15):
 *
 *   node --import tsx bench/map-read.ts [--size=2G] [--runs=3] [--seconds=10] [--depth=32]
 *                                       [--threads=1] [--dir=/var/tmp/virtnbdmap-bench] [--no-compressed]
 *
 * Data: a synthetic chain in the stream format (our writer): a full of `--size` virtual bytes
 * (data extents of 8–96 MiB, half random and half repetitive bytes, separated by 1–16 MiB
 * holes; boundaries 64 KiB aligned like qcow2 clusters) plus an incremental (64 × 1 MiB
 * and 64 × 128 KiB changed extents). Kept in `--dir` for reruns.
 *
 * Contenders, each an NBD export on 127.0.0.1 read by the same clients:
 *   - original: nbdkit with the original's exact command line (virtnbdmap 1.9.15,
 *     qemu/util.py startNbdkitProcess: `--filter=blocksize --filter=cow -v python
 *     /usr/bin/virtnbd-nbdkit-plugin maxlen=4096 blockmap=… disk=… debug=0 -t 1`), block map
 *     written by the original's own getDataRanges/dumpBlockMap. It serves the full only: its
 *     plugin ignores inc entries, incs are replayed onto a /dev/nbdX device, and there is none.
 *   - ours direct: the chain served by our NBD server without nbdkit in front (bench/serve-chain.ts),
 *     as `virtnbdrestore --live` serves it to qemu, plain and lz4;
 *   - ours, full only (same data as the original) and ours, full + inc (the whole chain),
 *     and ours on an lz4-compressed copy of the chain (the original cannot map those):
 *     `bin/virtnbdmap.js --listen-only` with default options (-b 4096). Both get `-t --threads`
 *     (nbdkit threads per connection; default 1 as in both tools).
 *
 * Measures: sequential read of the whole export with `nbdcopy --no-extents … null:` (all
 * bytes, holes included, so no side profits from block status) and with plain `nbdcopy`
 * (skips what block status reports as holes; the original reports none); best of `--runs`.
 * 4 KiB random reads: our NBD client, one connection, `--depth` requests in flight, random
 * 4 KiB-aligned offsets over the whole disk, for `--seconds`; IOPS. They run after the
 * sequential reads, so for the lz4 chain every frame has been touched once (warm: decoded
 * frames in virtnbdmap's on-disk cache). First touch: on a freshly started server, before
 * anything else, one 4 KiB read at a time into 16 data frames never read before (32 MiB
 * apart); median and largest latency. A spot check compares 2000 random 4 KiB blocks of the
 * full between original and ours.
 *
 * Results: printed as a table and written to bench/results/map-read.json.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash, randomFillSync } from "node:crypto";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { open, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { NbdClient } from "../src/nbd/index.js";
import { StreamWriter } from "../src/format/writer.js";
import { lz4Compress, lz4CompressBound } from "../src/format/lz4.js";
import type { ByteSink } from "../src/format/sink.js";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const KiB = 1024;
const root = new URL("..", import.meta.url).pathname;

function arg(name: string, def: string): string {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : def;
}
function parseSize(s: string): number {
  const m = /^(\d+)([KMG]?)$/i.exec(s);
  if (!m) throw new Error(`bad size ${s}`);
  return Number(m[1]) * ({ "": 1, K: KiB, M: MiB, G: GiB } as Record<string, number>)[m[2]!.toUpperCase()]!;
}

const SIZE = parseSize(arg("size", "2G"));
const RUNS = Number(arg("runs", "3"));
const SECONDS = Number(arg("seconds", "10"));
const DEPTH = Number(arg("depth", "32"));
const DIR = arg("dir", "/var/tmp/virtnbdmap-bench");
const COMPRESSED = !process.argv.includes("--no-compressed");
/** `-t` for both (the original's default is 1). */
const THREADS = arg("threads", "1");

// ------------------------------------------------------------------ data

class FileSink implements ByteSink {
  private pos = 0;
  constructor(private readonly fh: Awaited<ReturnType<typeof open>>) {}
  async write(chunk: Uint8Array): Promise<void> {
    // Several writes may be in flight (ByteSink contract): reserve the range first.
    const base = this.pos;
    this.pos += chunk.length;
    let done = 0;
    while (done < chunk.length) {
      const { bytesWritten } = await this.fh.write(chunk, done, chunk.length - done, base + done);
      done += bytesWritten;
    }
  }
}

/** Deterministic layout: [start, length] data extents. */
function layout(size: number): { full: [number, number][]; inc: [number, number][] } {
  let x = 0x9e3779b9;
  const rnd = (n: number) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
  const u = 64 * KiB;
  const full: [number, number][] = [];
  let pos = rnd(16) * u;
  while (pos < size) {
    const len = Math.min((128 + rnd(1408)) * u, size - pos); // 8 .. 96 MiB
    full.push([pos, len]);
    pos += len + (16 + rnd(240)) * u; // holes of 1 .. 16 MiB
  }
  const inc: [number, number][] = [];
  const starts = new Set<number>();
  for (let i = 0; i < 128; i++) starts.add(rnd(size / MiB - 1) * MiB);
  let k = 0;
  for (const s of [...starts].sort((a, b) => a - b)) inc.push([s, k++ % 2 === 0 ? MiB : 128 * KiB]);
  return { full, inc };
}

/** Bytes of an extent: per 64 KiB, random and repetitive halves (seeded by position). */
function fill(buf: Buffer, diskOffset: number, salt: number): void {
  for (let off = 0; off < buf.length; off += 64 * KiB) {
    const n = Math.min(64 * KiB, buf.length - off);
    const half = Math.min(32 * KiB, n);
    randomFillSync(buf, off, half);
    buf.fill(`block ${(diskOffset + off) / (64 * KiB)} salt ${salt} `, off + half, off + n);
  }
}

async function writeStream(path: string, size: number, extents: [number, number][], incremental: boolean, compressed: boolean, seed: number): Promise<void> {
  const fh = await open(path + ".tmp", "w");
  const chunk = 32 * MiB;
  const w = new StreamWriter(new FileSink(fh), { compressed, chunkSize: chunk });
  await w.meta({
    virtualSize: size,
    dataSize: extents.reduce((a, e) => a + e[1], 0),
    date: "2026-01-01T00:00:00.000001",
    diskName: "sda",
    diskFormat: "qcow2",
    checkpointName: incremental ? "virtnbdbackup.1" : "virtnbdbackup.0",
    compressed: compressed ? 2 : false,
    compressionMethod: "lz4",
    parentCheckpoint: incremental ? "virtnbdbackup.0" : "",
    incremental,
    streamVersion: 2,
  });
  const buf = Buffer.allocUnsafe(chunk);
  const out = Buffer.allocUnsafe(lz4CompressBound(chunk));
  let pos = 0;
  for (const [s, len] of extents) {
    if (!incremental && s > pos) await w.zero(pos, s - pos);
    await w.beginData(s, len);
    for (let done = 0; done < len; done += chunk) {
      const n = Math.min(chunk, len - done);
      const piece = buf.subarray(0, n);
      fill(piece, s + done, seed);
      if (compressed) await w.payload(out.subarray(0, await lz4Compress(piece, out, 2)));
      else await w.payload(piece);
    }
    await w.endData();
    pos = s + len;
  }
  if (!incremental && pos < size) await w.zero(pos, size - pos);
  await w.finish();
  await fh.close();
  spawnSync("mv", [path + ".tmp", path]);
}

interface DataSet {
  full: string;
  inc: string;
  fullZ: string;
  incZ: string;
  dataBytes: number;
}

async function dataSet(): Promise<DataSet> {
  mkdirSync(DIR, { recursive: true });
  const tag = `${SIZE / MiB}M`;
  const ds: DataSet = {
    full: join(DIR, `plain-${tag}/sda.full.data`),
    inc: join(DIR, `plain-${tag}/sda.inc.virtnbdbackup.1.data`),
    fullZ: join(DIR, `lz4-${tag}/sda.full.data`),
    incZ: join(DIR, `lz4-${tag}/sda.inc.virtnbdbackup.1.data`),
    dataBytes: 0,
  };
  const { full, inc } = layout(SIZE);
  ds.dataBytes = full.reduce((a, e) => a + e[1], 0);
  for (const [path, ext, incr, z, seed] of [
    [ds.full, full, false, false, 1],
    [ds.inc, inc, true, false, 2],
    ...(COMPRESSED ? ([[ds.fullZ, full, false, true, 1], [ds.incZ, inc, true, true, 2]] as const) : []),
  ] as const) {
    if (existsSync(path)) continue;
    mkdirSync(join(path, ".."), { recursive: true });
    const t0 = Date.now();
    await writeStream(path, SIZE, ext as [number, number][], incr, z, seed);
    console.log(`wrote ${path} (${((await stat(path)).size / MiB).toFixed(0)} MiB) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }
  return ds;
}

// ------------------------------------------------------------------ servers

interface Server {
  label: string;
  port: number;
  proc: ChildProcess;
}

async function waitPort(port: number, proc: ChildProcess, what: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (proc.exitCode !== null) throw new Error(`${what} exited with ${proc.exitCode}`);
    const r = spawnSync("nbdinfo", ["--size", `nbd://127.0.0.1:${port}/sda`], { encoding: "utf8" });
    if (r.status === 0) return;
    await sleep(100);
  }
  throw new Error(`${what} did not come up on port ${port}`);
}

async function stopProc(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const done = new Promise((r) => p.once("exit", r));
  p.kill("SIGTERM");
  await done;
}

let nextPort = 20000 + Math.floor(Math.random() * 20000);

async function startOriginal(full: string): Promise<Server> {
  const map = join(DIR, "block.original.map");
  const py = [
    "import sys, importlib.util",
    "from importlib.machinery import SourceFileLoader",
    "spec = importlib.util.spec_from_loader('vmap', SourceFileLoader('vmap', '/usr/bin/virtnbdmap'))",
    "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)",
    "from libvirtnbdbackup.sparsestream import streamer, types",
    "reader = open(sys.argv[2], 'rb')",
    "ranges, meta = mod.getDataRanges(streamer.SparseStream(types), types.SparseStreamTypes(), reader)",
    "fh = open(sys.argv[1], 'wb'); mod.dumpBlockMap(fh, ranges); fh.close()",
  ].join("\n");
  const r = spawnSync("/usr/bin/python3", ["-c", py, map, full], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`block map: ${r.stderr}`);
  const port = nextPort++;
  const log = await open(join(DIR, "nbdkit.original.log"), "w");
  // The original's command line (it daemonizes with --pidfile; -f keeps it our child).
  const proc = spawn(
    "nbdkit",
    ["-f", "--exit-with-parent", "-i", "127.0.0.1", "-p", String(port), "-e", "sda", "--filter=blocksize", "--filter=cow", "-v",
      "python", "/usr/bin/virtnbd-nbdkit-plugin", "maxlen=4096", `blockmap=${map}`, `disk=${full}`, "debug=0", "-t", THREADS],
    { stdio: ["ignore", log.fd, log.fd], env: { ...process.env, TMPDIR: DIR } },
  );
  await log.close();
  await waitPort(port, proc, "original nbdkit");
  return { label: "original (python plugin), full", port, proc };
}

async function startOurs(label: string, files: string[], extra: string[] = []): Promise<Server> {
  const port = nextPort++;
  const proc = spawn(
    process.execPath,
    [join(root, "bin/virtnbdmap.js"), "--listen-only", "-p", String(port), "--nocolor", "-L", join(DIR, "virtnbdmap.log"), "-t", THREADS, "-f", files.join(","), ...extra],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  await waitPort(port, proc, "virtnbdmap");
  return { label, port, proc };
}

/** Our server reading the chain directly, no nbdkit in front: how `virtnbdrestore --live` serves qemu. */
async function startDirect(label: string, files: string[]): Promise<Server> {
  const port = nextPort++;
  const proc = spawn(process.execPath, ["--import", "tsx", join(root, "bench/serve-chain.ts"), String(port), files.join(",")], { stdio: ["ignore", "ignore", "inherit"] });
  await waitPort(port, proc, "serve-chain");
  return { label, port, proc };
}

// ------------------------------------------------------------------ measurements

function timeNbdcopy(uri: string, noExtents: boolean): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync("nbdcopy", [...(noExtents ? ["--no-extents"] : []), uri, "null:"], { stdio: "inherit" });
  if (r.status !== 0) throw new Error(`nbdcopy ${uri} failed`);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function randomIops(port: number, size: number, seconds: number, depth: number): Promise<number> {
  const c = await NbdClient.open({ target: { kind: "tcp", host: "127.0.0.1", port }, exportName: "sda" });
  const blocks = Math.floor(size / 4096);
  let x = 0x2545f491;
  const rnd = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % blocks;
  };
  let count = 0;
  const end = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
  const t0 = process.hrtime.bigint();
  const worker = async () => {
    const buf = Buffer.allocUnsafe(4096);
    while (process.hrtime.bigint() < end) {
      await c.read(rnd() * 4096, 4096, buf);
      count++;
    }
  };
  await Promise.all(Array.from({ length: depth }, worker));
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  await c.disconnect();
  return count / elapsed;
}

async function sample(port: number, size: number): Promise<string> {
  const c = await NbdClient.open({ target: { kind: "tcp", host: "127.0.0.1", port }, exportName: "sda" });
  const h = createHash("sha256");
  let x = 12345;
  const buf = Buffer.allocUnsafe(4096);
  for (let i = 0; i < 2000; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    await c.read((x % Math.floor(size / 4096)) * 4096, 4096, buf);
    h.update(buf);
  }
  await c.disconnect();
  return h.digest("hex");
}

/** 16 offsets in distinct 32 MiB frames of the full's data extents (each the 4 KiB after a frame's first 4 KiB). */
function firstTouchOffsets(size: number): number[] {
  const out: number[] = [];
  for (const [start, len] of layout(size).full) {
    for (let rel = 0; rel + 8 * KiB <= len && out.length < 16; rel += 32 * MiB) out.push(start + rel + 4 * KiB);
  }
  return out;
}

async function firstTouch(port: number, offsets: number[]): Promise<{ medianMs: number; maxMs: number }> {
  const c = await NbdClient.open({ target: { kind: "tcp", host: "127.0.0.1", port }, exportName: "sda" });
  const buf = Buffer.allocUnsafe(4096);
  const ms: number[] = [];
  for (const off of offsets) {
    const t0 = process.hrtime.bigint();
    await c.read(off, 4096, buf);
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  await c.disconnect();
  ms.sort((a, b) => a - b);
  return { medianMs: ms[Math.floor(ms.length / 2)]!, maxMs: ms[ms.length - 1]! };
}

interface Row {
  label: string;
  firstTouchMedianMs: number;
  firstTouchMaxMs: number;
  seqNoExtentsMBps: number;
  seqMBps: number;
  randomIops: number;
  seqNoExtentsSeconds: number[];
  seqSeconds: number[];
}

async function measure(s: Server): Promise<Row> {
  const uri = `nbd://127.0.0.1:${s.port}/sda`;
  console.log(`\n== ${s.label} (port ${s.port})`);
  const touch = await firstTouch(s.port, firstTouchOffsets(SIZE));
  console.log(`  first touch: median ${touch.medianMs.toFixed(2)} ms, largest ${touch.maxMs.toFixed(2)} ms`);
  const noExt: number[] = [];
  const ext: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    noExt.push(timeNbdcopy(uri, true));
    ext.push(timeNbdcopy(uri, false));
    console.log(`  run ${i + 1}: nbdcopy --no-extents ${noExt[i]!.toFixed(2)} s, nbdcopy ${ext[i]!.toFixed(2)} s`);
  }
  const iops = await randomIops(s.port, SIZE, SECONDS, DEPTH);
  console.log(`  4 KiB random reads: ${Math.round(iops)} IOPS (depth ${DEPTH}, ${SECONDS} s)`);
  return {
    label: s.label,
    firstTouchMedianMs: touch.medianMs,
    firstTouchMaxMs: touch.maxMs,
    seqNoExtentsMBps: SIZE / Math.min(...noExt) / 1e6,
    seqMBps: SIZE / Math.min(...ext) / 1e6,
    randomIops: iops,
    seqNoExtentsSeconds: noExt,
    seqSeconds: ext,
  };
}

async function main(): Promise<void> {
  const b = spawnSync("npx", ["tsc", "-p", "tsconfig.json"], { cwd: root, stdio: "inherit" });
  if (b.status !== 0) console.warn("tsc reported errors (dist built anyway)");
  const ds = await dataSet();
  for (const f of [ds.full, ds.inc, ...(COMPRESSED ? [ds.fullZ, ds.incZ] : [])]) spawnSync("sh", ["-c", `cat '${f}' > /dev/null`]);
  const rows: Row[] = [];
  const servers: Server[] = [];
  const cleanup = async () => {
    for (const s of servers) await stopProc(s.proc);
  };
  process.once("SIGINT", () => void cleanup().then(() => process.exit(130)));
  try {
    const orig = await startOriginal(ds.full);
    servers.push(orig);
    const oursFull = await startOurs("ours, full", [ds.full]);
    servers.push(oursFull);
    const [a, b2] = [await sample(orig.port, SIZE), await sample(oursFull.port, SIZE)];
    console.log(`spot check (2000 random 4 KiB blocks of the full): ${a === b2 ? "identical" : "DIFFERENT"}`);
    if (a !== b2) throw new Error("original and ours serve different data");
    rows.push(await measure(orig));
    await stopProc(orig.proc);
    rows.push(await measure(oursFull));
    await stopProc(oursFull.proc);
    const oursChain = await startOurs("ours, full + inc", [ds.full, ds.inc]);
    servers.push(oursChain);
    rows.push(await measure(oursChain));
    await stopProc(oursChain.proc);
    if (COMPRESSED) {
      const oursZ = await startOurs("ours, full + inc, lz4", [ds.fullZ, ds.incZ]);
      servers.push(oursZ);
      rows.push(await measure(oursZ));
      await stopProc(oursZ.proc);
    }
    for (const [label, files] of [
      ["ours direct (live restore's path), full + inc", [ds.full, ds.inc]],
      ...(COMPRESSED ? [["ours direct (live restore's path), full + inc, lz4", [ds.fullZ, ds.incZ]] as [string, string[]]] : []),
    ] as [string, string[]][]) {
      const direct = await startDirect(label, files);
      servers.push(direct);
      rows.push(await measure(direct));
      await stopProc(direct.proc);
    }
  } finally {
    await cleanup();
    await rm(join(DIR, "block.original.map"), { force: true });
  }
  const base = rows[0]!;
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  const table = [
    line(["export", "first 4 KiB read (ms, median / max)", "seq read, all bytes (MB/s)", "ratio", "seq read, nbdcopy default (MB/s)", "ratio", "4 KiB random read (IOPS)", "ratio"]),
    line(["---", "---:", "---:", "---:", "---:", "---:", "---:", "---:"]),
    ...rows.map((r) =>
      line([
        r.label,
        `${r.firstTouchMedianMs.toFixed(2)} / ${r.firstTouchMaxMs.toFixed(2)}`,
        r.seqNoExtentsMBps.toFixed(0),
        (r.seqNoExtentsMBps / base.seqNoExtentsMBps).toFixed(2) + "×",
        r.seqMBps.toFixed(0),
        (r.seqMBps / base.seqMBps).toFixed(2) + "×",
        r.randomIops.toFixed(0),
        (r.randomIops / base.randomIops).toFixed(2) + "×",
      ]),
    ),
  ].join("\n");
  console.log(`\n${SIZE / GiB} GiB virtual disk, ${(ds.dataBytes / GiB).toFixed(2)} GiB data in the full; nbdkit -t ${THREADS}; ratios against the original\n`);
  console.log(table);
  const plainChain = rows.find((r) => r.label === "ours, full + inc");
  const lz4Chain = rows.find((r) => r.label === "ours, full + inc, lz4");
  const lz4WarmRatio = plainChain && lz4Chain ? lz4Chain.randomIops / plainChain.randomIops : null;
  if (lz4WarmRatio !== null) console.log(`\nlz4 chain, warm 4 KiB random reads: ${(lz4WarmRatio * 100).toFixed(0)} % of the plain chain's IOPS`);
  mkdirSync(join(root, "bench/results"), { recursive: true });
  writeFileSync(
    join(root, `bench/results/map-read${THREADS === "1" ? "" : `-t${THREADS}`}.json`),
    JSON.stringify({ date: new Date().toISOString(), machine: "2-core VM", threads: THREADS, size: SIZE, dataBytes: ds.dataBytes, runs: RUNS, seconds: SECONDS, depth: DEPTH, lz4WarmRatio, rows, table }, null, 2),
  );
}

await main();
