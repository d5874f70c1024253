/**
 * What the benchmarks share: a mixed-data test image (alternating random and text regions with
 * holes between them), a command run with its wall time and sampled peak RSS, a throwaway bench
 * domain.
 */
import { execFileSync, spawn } from "node:child_process";
import { randomFillSync } from "node:crypto";
import { createWriteStream, existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import type { Connection } from "../src/libvirt/connection.js";
import type { Domain } from "../src/libvirt/domain.js";

export const MiB = 1 << 20;
export const GiB = 1 << 30;

export interface Run {
  seconds: number;
  peakRssMiB: number;
  code: number;
  /** Data-phase seconds from our debug log ("Transferred … in X s"), when present. */
  transferSeconds?: number;
}

/**
 * A qcow2 image of `sizeGiB` with `regions` regions of 64 MiB every 128 MiB, alternately random
 * and text; built once per `recipe` (kept in the file `stamp`).
 */
export async function buildMixedImage(image: string, stamp: string, sizeGiB: number, regions: number, recipe: string, textLine: string): Promise<void> {
  if (existsSync(image) && existsSync(stamp) && readFileSync(stamp, "utf8") === recipe) return;
  console.log("building the benchmark image (once)…");
  const raw = `${image}.raw`;
  const fh = await open(raw, "w");
  await fh.truncate(sizeGiB * GiB);
  const region = Buffer.allocUnsafe(64 * MiB);
  const line = Buffer.from(textLine);
  for (let i = 0; i < regions; i++) {
    if (i % 2 === 0) randomFillSync(region);
    else for (let at = 0; at < region.length; at += line.length) line.copy(region, at, 0, Math.min(line.length, region.length - at));
    await fh.write(region, 0, region.length, i * 128 * MiB);
  }
  await fh.close();
  execFileSync("qemu-img", ["convert", "-q", "-f", "raw", "-O", "qcow2", raw, image]);
  rmSync(raw);
  writeFileSync(stamp, recipe);
}

/** Runs a command, sampling its VmRSS every 20 ms; rejects when it fails. */
export function measure(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; logFile?: string } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"], env: opts.env ?? process.env, cwd: opts.cwd });
    let stderr = "";
    let transferSeconds: number | undefined;
    const log = opts.logFile ? createWriteStream(opts.logFile) : null;
    child.stderr.on("data", (d: Buffer) => {
      log?.write(d);
      const text = d.toString();
      const m = /Transferred .* in ([\d.]+) s/.exec(text);
      if (m) transferSeconds = (transferSeconds ?? 0) + Number(m[1]);
      stderr = (stderr + text).slice(-4000);
    });
    let peak = 0;
    const timer = setInterval(() => {
      try {
        const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
        if (m) peak = Math.max(peak, Number(m[1]) / 1024);
      } catch {
        /* exited */
      }
    }, 20);
    child.on("exit", (code) => {
      clearInterval(timer);
      log?.end();
      const r: Run = { seconds: (performance.now() - t) / 1000, peakRssMiB: peak, code: code ?? 1, transferSeconds };
      if (r.code !== 0) reject(new Error(`${cmd} ${args.join(" ")} failed (${r.code}): ${stderr}`));
      else resolve(r);
    });
  });
}

/** How the disks of a bench domain are attached. */
export interface BenchDiskOptions {
  /** qemu's cache mode (`none`: O_DIRECT reads, e.g. images on a FUSE mount that has no page cache anyway). */
  cache?: string;
  /** false: libvirt leaves the image's owner and label alone (files on a mount that refuses chown). */
  relabel?: boolean;
}

/**
 * A TCG domain `name` on `image` (one SATA disk `sda`), or on several images (`sda`, `sdb`, …),
 * defined afresh: an old one of that name goes with its checkpoint metadata, and bitmaps earlier
 * runs left in the images are removed (they would collide with new checkpoints).
 */
export async function defineBenchDomain(conn: Connection, name: string, image: string | string[], o: BenchDiskOptions = {}): Promise<Domain> {
  const images = typeof image === "string" ? [image] : image;
  const driver = `<driver name='qemu' type='qcow2'${o.cache ? ` cache='${o.cache}'` : ""}/>`;
  const label = o.relabel === false ? "<seclabel model='dac' relabel='no'/>" : "";
  const disks = images.map((img, i) => `<disk type='file' device='disk'>${driver}<source file='${img}'>${label}</source><target dev='sd${String.fromCharCode(97 + i)}' bus='sata'/></disk>`);
  const xml = `<domain type='qemu'><name>${name}</name><memory unit='MiB'>64</memory>
    <os><type arch='x86_64' machine='pc'>hvm</type></os>
    <devices>${disks.join("")}</devices></domain>`;
  try {
    const old = await conn.lookupDomain(name);
    if (await old.isActive()) await old.destroy();
    await old.undefine(16 /* checkpoints metadata */);
  } catch {
    /* not there */
  }
  for (const img of images) {
    const info = JSON.parse(execFileSync("qemu-img", ["info", "--output=json", img], { encoding: "utf8" })) as { "format-specific"?: { data?: { bitmaps?: { name: string }[] } } };
    for (const b of info["format-specific"]?.data?.bitmaps ?? []) execFileSync("qemu-img", ["bitmap", "--remove", img, b.name]);
  }
  return conn.defineXML(xml);
}

/** The qdev id of a running domain's first disk (what `qemu-io -d` on its monitor takes). */
export async function diskDevice(dom: Domain): Promise<string> {
  const blocks = JSON.parse(await dom.qemuMonitorCommand('{"execute":"query-block"}')) as { return: { qdev?: string; inserted?: unknown }[] };
  const dev = blocks.return.find((b) => b.inserted)?.qdev;
  if (!dev) throw new Error("no disk device found");
  return dev;
}

/**
 * 64 MiB of scattered changes: 64 writes of 1 MiB at 1 MiB-aligned offsets in the first 4 GiB
 * of a running domain's disk `dev` (the same offsets and pattern for the same `seed`).
 */
export async function scatterWrites(dom: Domain, dev: string, seed: number): Promise<void> {
  let s = seed * 2654435761;
  const next = () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pattern = `0x${(0x10 + (seed % 0xe0)).toString(16)}`;
  for (let i = 0; i < 64; i++) {
    const offMiB = Math.floor(next() * 4096);
    const out = await dom.hmp(`qemu-io -d ${dev} "write -P ${pattern} ${offMiB}M 1M"`);
    if (/error|failed/i.test(out)) throw new Error(`qemu-io on ${dev}: ${out.trim()}`);
  }
}

/** The median of `xs` (the middle one; of an even count, the upper middle). */
export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
