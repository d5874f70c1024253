/**
 * Can the target's chain go on from its last checkpoint (docs/behaviour.md, "Checkpoint
 * drift")? The disks must be those of the set at their sizes, and the last checkpoint's bitmaps
 * sound: online libvirt vouches for them (redefined from the set when it lost them) and for
 * every checkpoint made after it; offline the image bitmap must exist and not be flagged
 * in-use. Read-only apart from redefining lost checkpoints from the set.
 */
import { readdir, stat } from "../storage/files.js";
import { join } from "node:path";
import { checkpointIndex, parseDataFileName } from "../backupset/layout.js";
import { StreamReader } from "../format/reader.js";
import * as C from "../libvirt/constants.js";
import type { Domain } from "../libvirt/domain.js";
import { DirectorySource } from "../storage/directory-source.js";
import { oneLine } from "../util/one-line.js";
import { humanize } from "../report/humanize.js";
import { checkpointProblem, redefineMissing } from "./checkpoints.js";
import { diskBitmaps } from "./disk-bitmaps.js";
import { listBlockBitmaps, type DiskBlockNode } from "../libvirt/block-bitmaps.js";
import type { Preflight, RunContext } from "./run-context.js";

type Facts = Pick<Preflight, "domain" | "offline" | "disks" | "cpt">;

/** Why the chain cannot continue (a phrase naming disk or checkpoint), or null when it can. */
export async function chainProblem(r: RunContext, m: Facts): Promise<string | null> {
  const last = m.cpt.at(-1);
  // inc/diff: the original's "No existing checkpoints found" follows (planCheckpoint).
  if (last === undefined) return r.args.level === "auto" ? `the checkpoint list [${r.cptPath}] is missing or empty` : null;
  const diskProblem = await diskDrift(r, m, last);
  if (diskProblem) return diskProblem;
  const problem = await (m.offline ? offlineBitmapProblem(r, m, last) : onlineCheckpointProblem(r, m, last));
  r.log.debug(`Chain check of [${r.outDir}] from [${last}]: ${problem ?? "the disks and bitmaps allow an incremental backup"}`);
  return problem;
}

/** The set's chain names another chain (`--chain`): a refusal, not something to heal. */
export function chainNameMismatch(r: RunContext, cpt: readonly string[]): string | null {
  const other = cpt.find((n) => checkpointIndex(n, r.chain) === null);
  if (other === undefined) return null;
  const want = r.chain ? `--chain ${r.chain} (virtnbdbackup.${r.chain}.N)` : "the default chain (virtnbdbackup.N)";
  return `Checkpoint [${other}] listed in [${r.cptPath}] is not of ${want}: back up this target with the option it was made with.`;
}

export async function diskDrift(r: RunContext, m: Facts, last: string): Promise<string | null> {
  const sizes = await setDiskSizes(r.outDir);
  for (const d of m.disks.filter((x) => !x.raw)) {
    const before = sizes.get(d.target);
    if (before === undefined) return `disk [${d.target}] was added after checkpoint [${last}]`;
    if (before === null) continue;
    const now = (await m.domain.blockInfo(d.target)).capacity;
    if (now !== before) return `disk [${d.target}] changed size from [${humanize(before)}] to [${humanize(now)}] after checkpoint [${last}]`;
  }
  return null;
}

/** Per disk of the set: the virtual size its newest stream file records (null: not a readable stream). */
export async function setDiskSizes(dir: string): Promise<Map<string, number | null>> {
  const files = (await readdir(dir)).flatMap((name) => {
    const parsed = parseDataFileName(name);
    return parsed && parsed.level !== "copy" ? [{ name, disk: parsed.disk }] : [];
  });
  // Their times asked all at once (a chain of 190 files took 45 ms one after the other).
  const mtimes = await Promise.all(files.map(async (f) => (await stat(join(dir, f.name))).mtimeMs));
  const newest = new Map<string, { name: string; mtime: number }>();
  for (const [i, { name, disk }] of files.entries()) {
    const mtime = mtimes[i]!;
    const seen = newest.get(disk);
    if (!seen || mtime > seen.mtime) newest.set(disk, { name, mtime });
  }
  const source = new DirectorySource(dir);
  const sizes = new Map<string, number | null>();
  for (const [disk, { name }] of newest) {
    const file = await source.open(name);
    try {
      sizes.set(disk, (await StreamReader.open(file, { trailer: false })).meta.virtualSize);
    } catch {
      sizes.set(disk, null); // not a stream (a raw image): no size to compare
    } finally {
      await file.close();
    }
  }
  return sizes;
}

async function onlineCheckpointProblem(r: RunContext, m: Facts, last: string): Promise<string | null> {
  try {
    await redefineMissing(m.domain, r.checkpointDir, r.log);
  } catch (e) {
    return `libvirt lost the set's checkpoints and they cannot be redefined: ${oneLine((e as Error).message)}`;
  }
  return libvirtChainProblem(m.domain, last, await soundOnEveryDisk(m));
}

/**
 * The bitmaps the running qemu shows sound (persistent, recording, consistent) on the top node
 * of every qcow disk of the run, from one query: what libvirt's validation of a checkpoint
 * checks for those disks. Empty when qemu cannot be asked.
 */
async function soundOnEveryDisk(m: Facts): Promise<Set<string>> {
  const qcow = m.disks.filter((d) => !d.raw && d.format.startsWith("qcow"));
  let live: DiskBlockNode[];
  try {
    live = await listBlockBitmaps(m.domain);
  } catch {
    return new Set();
  }
  const perDisk = qcow.map((d) => new Set((live.find((x) => x.target === d.target)?.bitmaps ?? []).filter((b) => b.persistent && b.recording && !b.inconsistent).map((b) => b.name)));
  if (perDisk.length === 0) return new Set();
  return new Set([...perDisk[0]!].filter((name) => perDisk.every((names) => names.has(name))));
}

/**
 * Read-only: libvirt vouches for `last` and every checkpoint made after it, or the first reason
 * it does not. A checkpoint in `sound` (its bitmaps seen sound by qemu on every disk of the run)
 * is not validated by libvirt: that redefines it and asks qemu for every node's bitmaps
 * (20 ms, most of an inc's chain check).
 */
export async function libvirtChainProblem(domain: Domain, last: string, sound: ReadonlySet<string> = new Set()): Promise<string | null> {
  // One after the other: the check redefines `last` (libvirt replaces its metadata object).
  const problem = sound.has(last) ? null : await checkpointProblem(domain, last);
  if (problem !== null) return `checkpoint [${last}] is unusable: ${problem}`;
  let descendants: string[];
  try {
    descendants = await descendantsOf(domain, last);
  } catch (e) {
    return `checkpoint [${last}] is unusable: ${oneLine((e as Error).message)}`; // libvirt does not know it
  }
  for (const later of descendants) {
    const p = sound.has(later) ? null : await checkpointProblem(domain, later);
    if (p !== null) return `checkpoint [${later}] made after [${last}] is unusable: ${p}`;
  }
  return null;
}

/** The checkpoints libvirt made after `name` (its children, theirs, …): an inc merges their bitmaps. One call, whatever the chain's length. */
async function descendantsOf(domain: Domain, name: string): Promise<string[]> {
  const cp = await domain.checkpointLookupByName(name);
  try {
    const below = await cp.listAllChildren(C.VIR_DOMAIN_CHECKPOINT_LIST_DESCENDANTS);
    for (const c of below) c.free();
    return below.map((c) => c.name);
  } finally {
    cp.free();
  }
}

async function offlineBitmapProblem(r: RunContext, m: Facts, last: string): Promise<string | null> {
  let disks;
  try {
    disks = await diskBitmaps(r, m);
  } catch (e) {
    return `the bitmaps of the disks cannot be read: ${oneLine((e as Error).message)}`;
  }
  for (const d of disks) {
    const bitmap = d.bitmaps.find((b) => b.name === last);
    if (!bitmap) return `bitmap [${last}] of disk [${d.target}] is missing from [${d.image}]`;
    if (bitmap.broken) return `bitmap [${last}] of disk [${d.target}] is ${bitmap.broken}`;
  }
  return null;
}
