/**
 * Checkpoint handling (docs/behaviour.md, "Checkpoints"): redefining checkpoints libvirt lost, clearing them
 * before a full, choosing name and parent for inc/diff (falling back to full when the parent's
 * bitmap is broken), and recording a new checkpoint in `<dom>.cpt` and the checkpoint dir.
 */
import { readdir, readFile, stat, unlink } from "../storage/files.js";
import { join } from "node:path";
import { checkpointIndex, checkpointName, checkpointXmlName, isCheckpointXmlName, isOwnCheckpointName } from "../backupset/layout.js";
import { formatCpt, readCpt } from "../backupset/cpt.js";
import * as C from "../libvirt/constants.js";
import type { Checkpoint } from "../libvirt/checkpoint.js";
import type { Domain } from "../libvirt/domain.js";
import { isLibvirtError } from "../libvirt/errors.js";
import { parseXml, elementAt, textOf } from "../libvirt/domain-xml.js";
import { writeFileDurably, fsyncDirectory } from "../storage/durable.js";
import { oneLine } from "../util/one-line.js";

export interface CheckpointLog {
  info(m: string): void;
  debug?(m: string): void;
  warning(m: string): void;
  error(m: string): void;
  critical(m: string): void;
}

export class CheckpointError extends Error {}


/** The names of every checkpoint libvirt knows for the domain (their handles freed). */
export async function checkpointNames(domain: Domain): Promise<string[]> {
  const all = await domain.listAllCheckpoints();
  const names = all.map((c) => c.name);
  for (const c of all) c.free();
  return names;
}

/** Checkpoints not made by us: full/inc/diff refuse to run while one exists. */
export async function foreignCheckpoints(domain: Domain): Promise<string[]> {
  return (await checkpointNames(domain)).filter((n) => !isOwnCheckpointName(n));
}

/** The checkpoint XML files in `dir` (names only; none when it does not exist). */
async function checkpointXmlFiles(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).filter(isCheckpointXmlName);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
}

/** `names` of files in `dir` as paths, oldest first (mtime, then name). */
async function byMtime(dir: string, names: string[]): Promise<string[]> {
  const withTime = await Promise.all(names.map(async (n) => ({ n, t: (await stat(join(dir, n))).mtimeMs })));
  return withTime.sort((a, b) => a.t - b.t || (a.n < b.n ? -1 : 1)).map((x) => join(dir, x.n));
}

/**
 * Re-creates checkpoints from saved XML that libvirt does not know (transient VMs, other hosts).
 * libvirt's names come in one call. A file is named after its checkpoint (layout.ts): one whose
 * name libvirt knows is not read; the others are read (the name inside them counts), oldest
 * first. Reading every file made an inc of a chain of 190 spend 0.16 s here, twice (2026-12-05).
 */
export async function redefineMissing(domain: Domain, dir: string, log: CheckpointLog): Promise<void> {
  const names = await checkpointXmlFiles(dir);
  if (names.length === 0) return;
  log.info(`Loaded checkpoint list from: [${dir}]`);
  const known = new Set(await checkpointNames(domain));
  const knownFiles = new Set([...known].map(checkpointXmlName));
  const unknown = names.filter((n) => !knownFiles.has(n));
  log.debug?.(`Checkpoint files in [${dir}] named after a checkpoint libvirt knows: [${names.length - unknown.length}] of [${names.length}].`);
  for (const file of await byMtime(dir, unknown)) {
    const xml = await readFile(file, "utf8");
    const name = savedCheckpointName(xml, file);
    if (known.has(name)) {
      log.debug?.(`Checkpoint [${name}] of [${file}] is known to libvirt.`);
      continue;
    }
    log.info(`Redefine missing checkpoint: [${name}]`);
    try {
      (await domain.checkpointCreateXML(xml, C.VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE | C.VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE_VALIDATE)).free();
    } catch (e) {
      throw new CheckpointError(`Unable to redefine checkpoint [${name}] from [${file}]: ${(e as Error).message}`);
    }
    known.add(name);
  }
}

/** `<domaincheckpoint><name>…` as libvirt writes it: the name without parsing the whole document. */
const LEADING_NAME = /^\s*(?:<\?xml[^>]*\?>\s*)?<domaincheckpoint>\s*<name>([^<&]+)<\/name>/;

/** The checkpoint's name in its saved XML (`file` names it in the error). */
export function savedCheckpointName(xml: string, file: string): string {
  const name = LEADING_NAME.exec(xml)?.[1] ?? textOf(elementAt(parseXml(xml, file).documentElement!, "name"));
  if (!name) throw new CheckpointError(`Checkpoint file [${file}] has no <name>`);
  return name;
}

/** null when libvirt accepts the checkpoint's own XML again (its bitmaps exist and are sound), else libvirt's reason. */
export async function checkpointProblem(domain: Domain, name: string): Promise<string | null> {
  let cp: Checkpoint;
  try {
    cp = await domain.checkpointLookupByName(name);
  } catch (e) {
    return oneLine((e as Error).message);
  }
  try {
    return await redefineProblem(domain, cp);
  } finally {
    cp.free();
  }
}

/** checkpointProblem for a checkpoint already looked up. */
async function redefineProblem(domain: Domain, cp: Checkpoint): Promise<string | null> {
  try {
    const xml = await cp.xmlDesc();
    (await domain.checkpointCreateXML(xml, C.VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE | C.VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE_VALIDATE)).free();
    return null;
  } catch (e) {
    return oneLine((e as Error).message);
  }
}

/**
 * Deletes a checkpoint with its bitmaps; when libvirt refuses because a bitmap is missing or
 * broken (it changes nothing then), its metadata only. The check comes after a refusal, not
 * before each delete: libvirt's validation cost 16 ms per checkpoint here, a full after 60 incs
 * spent 1 s in it (2026-12-05).
 */
async function deleteCheckpoint(domain: Domain, name: string, startingOver: boolean, log: CheckpointLog): Promise<void> {
  const cp = await domain.checkpointLookupByName(name);
  try {
    try {
      await cp.delete(0);
      return;
    } catch (e) {
      if ((await redefineProblem(domain, cp)) === null) throw e;
    }
    // Starting a new generation, the broken chain was the WARNING already.
    (startingOver ? log.info : log.warning).call(log, "Checkpoint inconsistency detected, removing metadata for checkpoint.");
    await cp.delete(C.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY);
  } finally {
    cp.free();
  }
}

/** The names of `chain`'s checkpoints libvirt knows for the domain, oldest index first. */
export async function chainCheckpoints(domain: Domain, chain: string): Promise<string[]> {
  return (await checkpointNames(domain)).filter((n) => checkpointIndex(n, chain) !== null).sort((a, b) => checkpointIndex(a, chain)! - checkpointIndex(b, chain)!);
}

/**
 * Before a full backup: forget the old chain in libvirt, the checkpoint dir and the .cpt. Only
 * this chain's checkpoints (docs/behaviour.md, "Independent chains"): other chains and foreign
 * checkpoints stay.
 */
export async function removeAllForFull(domain: Domain, cptPath: string, dir: string, chain: string, startingOver: boolean, log: CheckpointLog): Promise<void> {
  log.info("Removing all existent checkpoints before full backup.");
  for (const name of await checkpointXmlFiles(dir)) await unlink(join(dir, name));
  const listed = await readCpt(cptPath);
  let names: string[];
  if (listed.length > 0) {
    names = listed;
  } else {
    names = await chainCheckpoints(domain, chain);
  }
  // Children first: deleting a parent merges its bitmap into the child otherwise.
  for (const name of [...names].reverse()) {
    try {
      await deleteCheckpoint(domain, name, startingOver, log);
    } catch (e) {
      if (listed.length > 0 && isLibvirtError(e, C.VIR_ERR_NO_DOMAIN_CHECKPOINT)) {
        log.warning(`Checkpoint [${name}] listed in [${cptPath}] is unknown to libvirt.`);
        continue;
      }
      throw new CheckpointError(`Unable to remove checkpoint [${name}]: ${(e as Error).message}`);
    }
  }
  if (listed.length > 0) {
    await unlink(cptPath).catch(() => undefined);
    await fsyncDirectory(join(cptPath, ".."));
  }
}

/**
 * Offline, starting a new generation: libvirt forgets this chain's checkpoints (metadata only:
 * their bitmaps go as stale ones, through qemu-img), so the next online run starts clean.
 */
export async function forgetChainCheckpoints(domain: Domain, chain: string, log: CheckpointLog): Promise<void> {
  for (const name of (await chainCheckpoints(domain, chain)).reverse()) {
    const cp = await domain.checkpointLookupByName(name);
    try {
      await cp.delete(C.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY);
      log.info(`Removed checkpoint metadata [${name}] of the chain that cannot continue.`);
    } finally {
      cp.free();
    }
  }
}

export interface CheckpointPlan {
  /** Checkpoint created by this run (full/inc), or recorded in the metadata only. */
  name: string;
  /** Parent for inc/diff, "" otherwise. */
  parent: string;
  level: "copy" | "full" | "inc" | "diff";
}

/** The highest index among `names` of `chain`, -1 when none. */
export function highestIndex(names: readonly string[], chain: string): number {
  return Math.max(-1, ...names.map((n) => checkpointIndex(n, chain) ?? -1));
}

/**
 * Name and parent for this run (docs/behaviour.md, "Checkpoint name and parent"). A full starts
 * at `firstIndex` (0, or where a previous generation of the target ended + 1); an inc takes the
 * next index after the set's highest (the original's `len(cpt)` for sets it made).
 */
export interface PlanInput {
  level: "copy" | "full" | "inc" | "diff";
  /** The set's `.cpt` names (and where that file is, for the message when it has none). */
  cpt: string[];
  cptPath: string;
  offline: boolean;
  chain: string;
  firstIndex: number;
}

export function planCheckpoint(p: PlanInput, log: CheckpointLog): CheckpointPlan {
  const { level, cpt, offline, chain, firstIndex } = p;
  if (level === "copy" || level === "full") return { name: checkpointName(firstIndex, chain), parent: "", level };
  if (cpt.length === 0) throw new CheckpointError(`No existing checkpoints found, execute full backup first: the checkpoint list [${p.cptPath}] is missing or empty.`);
  const parent = cpt.at(-1)!;
  const nextIndex = highestIndex(cpt, chain) + 1;
  const next = checkpointName(nextIndex, chain);
  log.info(`Next checkpoint id: [${nextIndex}].`);
  log.info(`Parent checkpoint name [${parent}].`);
  if (offline) {
    log.info("Offline backup, using latest checkpoint, saving only delta.");
    return { name: parent, parent, level };
  }
  if (level === "diff") log.info(`Diff backup: saving delta since checkpoint: [${parent}].`);
  return { name: next, parent, level };
}

/** The new checkpoint's XML as the set keeps it (SIZE flag, else plain). */
export async function checkpointXmlForSet(domain: Domain, name: string, log: CheckpointLog): Promise<string> {
  const cp = await domain.checkpointLookupByName(name);
  try {
    return await cp.xmlDesc(C.VIR_DOMAIN_CHECKPOINT_XML_SIZE);
  } catch {
    log.warning("Unable to get checkpoint size, saving checkpoint config without size information.");
    return await cp.xmlDesc(0);
  } finally {
    cp.free();
  }
}

/**
 * After the job started: append to `.cpt`, then save the checkpoint's XML (`xml`: from
 * checkpointXmlForSet, asked while the files before it were written).
 */
export async function recordCheckpoint(xml: Promise<string>, name: string, cptPath: string, dir: string, log: CheckpointLog): Promise<void> {
  const list = await readCpt(cptPath);
  list.push(name);
  await writeFileDurably(cptPath, formatCpt(list), true);
  const file = join(dir, checkpointXmlName(name));
  log.info(`Saving checkpoint config to: [${file}]`);
  await writeFileDurably(file, await xml, true);
}

/** Sum of `disks/disk/@size` of the parent checkpoint (for `-p` and `-T`). */
export async function checkpointSize(domain: Domain, name: string): Promise<number> {
  const cp = await domain.checkpointLookupByName(name);
  try {
    const doc = parseXml(await cp.xmlDesc(C.VIR_DOMAIN_CHECKPOINT_XML_SIZE), "checkpoint XML");
    const disks = doc.getElementsByTagName("disk");
    let total = 0;
    for (let i = 0; i < disks.length; i++) total += Number(disks.item(i)!.getAttribute("size") ?? 0) || 0;
    return total;
  } finally {
    cp.free();
  }
}
