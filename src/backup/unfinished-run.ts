/**
 * A run that died (docs/behaviour.md, "Unfinished runs"): its run marker is left and its
 * domain lock is free, so its owner is gone. `-l auto` continues safely: the job it left is
 * aborted; a checkpoint it created whose data was not saved for every disk is dropped (libvirt
 * merges its bitmap into the parent, so the next inc still sees every change) and taken out of
 * the set; its `.partial` files are removed, complete files of the dropped checkpoint moved
 * aside into `unfinished.<pid>/`. A checkpoint whose data is complete stays.
 */
import { mkdir, readdir, rename, stat, unlink } from "../storage/files.js";
import { join } from "node:path";
import { checkpointIndex, checkpointXmlName, dataFileName, parseDataFileName, runMarkerFileName } from "../backupset/layout.js";
import { formatCpt, readCpt } from "../backupset/cpt.js";
import * as C from "../libvirt/constants.js";
import type { Domain } from "../libvirt/domain.js";
import { isLibvirtError } from "../libvirt/errors.js";
import { isPartialPath } from "../storage/durable.js";
import { fsyncDirectory, writeFileDurably } from "../storage/durable.js";
import { oneLine } from "../util/one-line.js";
import { checkpointNames, checkpointProblem, highestIndex } from "./checkpoints.js";
import type { RunContext } from "./run-context.js";
import { clearRunMarker, type RunMarker } from "./run-marker.js";
import { stopBackupJob } from "./job.js";

export async function healUnfinishedRun(r: RunContext, domain: Domain, offline: boolean, marker: RunMarker): Promise<void> {
  const { log } = r;
  log.warning(
    `Previous backup run into [${r.outDir}] did not finish (pid ${marker.pid}, level ${marker.level}, started ${marker.started}): ` +
      "continuing from its last complete checkpoint.",
  );
  if (!offline && (await domain.jobInfo()).type !== C.VIR_DOMAIN_JOB_NONE) {
    await stopBackupJob(domain);
    log.info(`Aborted the backup job left by pid ${marker.pid}.`);
  }
  const cpt = await readCpt(r.cptPath);
  const created = await checkpointOfDeadRun(r, domain, marker, cpt);
  if (created !== null && !(await dataComplete(r.outDir, cpt, created))) await dropCheckpoint(r, domain, cpt, created, marker.pid);
  await removePartials(r);
  await clearRunMarker(r.outDir, r.args.domain);
}

/** The checkpoint the dead run created: named in its marker, or (killed before it said) the next one after the set's last. */
async function checkpointOfDeadRun(r: RunContext, domain: Domain, marker: RunMarker, cpt: string[]): Promise<string | null> {
  if (marker.checkpoint !== "?" && (marker.level === "full" || marker.level === "inc") && checkpointIndex(marker.checkpoint, r.chain) !== null) return marker.checkpoint;
  if (marker.level !== "full" && marker.level !== "inc") return null;
  const next = highestIndex(cpt, r.chain) + 1;
  return (await checkpointNames(domain)).find((n) => checkpointIndex(n, r.chain) === next && !cpt.includes(n)) ?? null;
}

/** Every disk of the set (those with a full) has the checkpoint's final data file. */
async function dataComplete(dir: string, cpt: string[], checkpoint: string): Promise<boolean> {
  if (!cpt.includes(checkpoint)) return false;
  const disks = (await readdir(dir)).map(parseDataFileName).filter((p) => p?.level === "full").map((p) => p!.disk);
  if (disks.length === 0) return false;
  const first = cpt[0] === checkpoint;
  for (const disk of disks) {
    const name = dataFileName(disk, first ? "full" : "inc", checkpoint);
    if ((await stat(join(dir, name)).catch(() => null)) === null) return false;
  }
  return true;
}

async function dropCheckpoint(r: RunContext, domain: Domain, cpt: string[], name: string, pid: number): Promise<void> {
  try {
    const cp = await domain.checkpointLookupByName(name);
    try {
      // Sound: deleting merges its bitmap into the parent's. Broken: its metadata only.
      await cp.delete((await checkpointProblem(domain, name)) === null ? 0 : C.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY);
    } finally {
      cp.free();
    }
  } catch (e) {
    if (!isLibvirtError(e, C.VIR_ERR_NO_DOMAIN_CHECKPOINT)) throw e;
  }
  if (cpt.includes(name)) await writeFileDurably(r.cptPath, formatCpt(cpt.filter((n) => n !== name)), true);
  await unlink(join(r.checkpointDir, checkpointXmlName(name))).catch(() => undefined);
  const moved = await moveAsideFilesOf(r.outDir, name, cpt[0] === name, pid);
  r.log.info(`Dropped checkpoint [${name}] of the unfinished run${moved ? `; its complete files moved to [${moved}]` : ""}.`);
}

/** Complete data files of the dropped checkpoint would clash with the retried run's: moved, never deleted. */
async function moveAsideFilesOf(dir: string, checkpoint: string, isFull: boolean, pid: number): Promise<string | null> {
  const mine = (await readdir(dir)).filter((n) => {
    const p = parseDataFileName(n.replace(/\.(chksum|integrity)$/, ""));
    if (!p || isPartialPath(n)) return false;
    return isFull ? p.level === "full" : p.level === "inc" && p.ident === checkpoint;
  });
  if (mine.length === 0) return null;
  const aside = join(dir, `unfinished.${pid}`);
  await mkdir(aside, { recursive: true });
  for (const n of mine) await rename(join(dir, n), join(aside, n));
  await fsyncDirectory(dir);
  return aside;
}

async function removePartials(r: RunContext): Promise<void> {
  const marker = runMarkerFileName(r.args.domain);
  const partials = (await readdir(r.outDir)).filter((n) => isPartialPath(n) && n !== marker);
  for (const n of partials) await unlink(join(r.outDir, n));
  if (partials.length > 0) {
    await fsyncDirectory(r.outDir);
    r.log.info(`Removed [${partials.length}] unfinished file(s) of the previous run: ${oneLine(partials.join(", "))}`);
  }
}
