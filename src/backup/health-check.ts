/**
 * `--check` (docs/behaviour.md, "Health check"): one domain against one target, read-only.
 * libvirt's checkpoints vs the set's `.cpt` and `checkpoints/` vs the bitmaps in each image with
 * their flags, the disks vs the set, an unfinished run. One WARNING line per finding, then a
 * summary; exit 0 when healthy, 1 otherwise. Nothing is changed, no log file is written.
 */
import { readdir } from "../storage/files.js";
import { checkpointIndex, isCheckpointXmlName, isOwnCheckpointName } from "../backupset/layout.js";
import type { SelectedDisk } from "../libvirt/disk-selection.js";
import { diskDrift, libvirtChainProblem } from "./chain-continuation.js";
import { checkpointNames } from "./checkpoints.js";
import { diskBitmaps } from "./disk-bitmaps.js";
import type { DomainState, RunContext } from "./run-context.js";
import { readRunMarker } from "./run-marker.js";

interface Checked extends DomainState {
  disks: SelectedDisk[];
  cpt: string[];
}

export async function checkHealth(r: RunContext, m: Checked): Promise<number> {
  const known = new Set(await checkpointNames(m.domain));
  const findings = [...(await setFindings(r, m)), ...(await libvirtFindings(r, m, known)), ...(await bitmapFindings(r, m, known))];
  for (const f of findings) r.log.warning(f);
  const last = m.cpt.at(-1);
  const where = `[${r.args.domain}] against [${r.outDir}]${r.generation > 1 ? ` (generation ${r.generation})` : ""}`;
  if (findings.length === 0) {
    r.log.info(`Healthy: ${where}: ${m.cpt.length} checkpoint(s)${last ? `, the next backup continues from [${last}]` : ""}.`);
    return 0;
  }
  r.log.error(`[${findings.length}] finding(s) for ${where}: [-l auto] heals what it can (docs/behaviour.md, "Checkpoint drift").`);
  return 1;
}

async function setFindings(r: RunContext, m: Checked): Promise<string[]> {
  const out: string[] = [];
  const marker = await readRunMarker(r.outDir, r.args.domain);
  if (marker) out.push(`Unfinished run: pid ${marker.pid} (${isAlive(marker.pid) ? "still running" : "gone"}), level ${marker.level}, checkpoint ${marker.checkpoint}, started ${marker.started}.`);
  if (m.cpt.length === 0) {
    if (!r.dirState.empty) out.push(`The set in [${r.outDir}] lists no checkpoint: the next inc cannot continue it.`);
    return out;
  }
  const other = m.cpt.find((n) => checkpointIndex(n, r.chain) === null);
  if (other) out.push(`Checkpoint [${other}] in [${r.cptPath}] is not of ${r.chain ? `chain [${r.chain}]` : "the default chain"}: check --chain.`);
  const xmls = new Set((await readdir(r.checkpointDir).catch(() => [] as string[])).filter(isCheckpointXmlName).map((n) => n.slice(0, -4)));
  for (const n of m.cpt) if (!xmls.has(n)) out.push(`Checkpoint [${n}] has no saved XML in [${r.checkpointDir}]: libvirt cannot be told about it again.`);
  const drift = await diskDrift(r, m, m.cpt.at(-1)!);
  if (drift) out.push(`The chain cannot continue: ${drift}.`);
  return out;
}

/** `known`: every checkpoint name libvirt has for the domain. */
async function libvirtFindings(r: RunContext, m: Checked, known: ReadonlySet<string>): Promise<string[]> {
  const out: string[] = [];
  for (const n of m.cpt) if (!known.has(n)) out.push(`Checkpoint [${n}] of the set is unknown to libvirt: the next run redefines it from the saved XML when its bitmaps exist.`);
  for (const n of known) {
    if (checkpointIndex(n, r.chain) !== null && !m.cpt.includes(n)) out.push(`Checkpoint [${n}] of this chain is not in [${r.cptPath}]: another target with the same chain, or a run that died.`);
  }
  for (const n of [...known].filter((x) => !isOwnCheckpointName(x))) out.push(`Foreign checkpoint [${n}]: -l full/inc/diff refuse to run while it exists (-l auto keeps it).`);
  const last = m.cpt.at(-1);
  if (last && known.has(last)) {
    const problem = await libvirtChainProblem(m.domain, last);
    if (problem) out.push(`The chain cannot continue: ${problem}.`);
  }
  return out;
}

async function bitmapFindings(r: RunContext, m: Checked, claimed: ReadonlySet<string>): Promise<string[]> {
  const out: string[] = [];
  const last = m.cpt.at(-1);
  for (const { target, bitmaps } of await diskBitmaps(r, m)) {
    for (const b of bitmaps) {
      if (b.broken) out.push(`Bitmap [${b.name}] of disk [${target}] is ${b.broken}.`);
      if (checkpointIndex(b.name, r.chain) !== null && !claimed.has(b.name) && !m.cpt.includes(b.name)) {
        out.push(`Stale bitmap [${b.name}] of disk [${target}]: no checkpoint claims it (the next full or inc removes it).`);
      }
    }
    if (last && !bitmaps.some((b) => b.name === last)) out.push(`Disk [${target}] has no bitmap [${last}]: the chain cannot continue for it.`);
  }
  return out;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}
