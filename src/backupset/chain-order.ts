/**
 * Orders one disk's stream files into a restore chain by their metadata links, not by file
 * mtime: full → each inc whose `parentCheckpoint` is the previous `checkpointName`; diffs and
 * offline incs (cumulative since their parent) follow their parent, oldest first. Gaps,
 * duplicates and strays are refused with a message naming the missing link.
 */
import type { StreamMetadata } from "../format/metadata.js";
import { CHECKPOINT_DIR, checkpointIndex, checkpointName, checkpointOfXmlPath, checkpointXmlName, parseDataFileName } from "./layout.js";

export interface ChainFile {
  name: string;
  meta: StreamMetadata;
  mtimeMs: number;
}

export class ChainError extends Error {}

type Role = "base" | "step" | "leaf";

function roleOf(f: ChainFile): Role {
  const level = parseDataFileName(f.name)?.level;
  if (level === "full" || level === "copy") return "base";
  if (level === "diff") return "leaf";
  // inc: online incs create their checkpoint; offline incs reuse the parent's name (cumulative).
  if (f.meta.incremental && f.meta.parentCheckpoint === f.meta.checkpointName) return "leaf";
  return "step";
}

const byDate = (a: ChainFile, b: ChainFile) =>
  a.meta.date < b.meta.date ? -1 : a.meta.date > b.meta.date ? 1 : a.mtimeMs - b.mtimeMs;

/**
 * The files to apply, in order. `disk` only names the disk in messages. With `until` (a
 * checkpoint some full/inc of the chain created), files that cannot be placed after that point
 * (a later file missing, an orphaned offline inc) do not stop a restore of the earlier point.
 */
export function buildChain(disk: string, files: ChainFile[], until?: string): ChainFile[] {
  const bases = files.filter((f) => roleOf(f) === "base");
  if (bases.length === 0) throw new ChainError(`Unable to locate base full or copy backup for disk [${disk}].`);
  if (bases.length > 1) throw new ChainError(`Disk [${disk}] has more than one full/copy backup: ${bases.map((b) => b.name).join(", ")}`);
  const base = bases[0]!;
  const isCopy = parseDataFileName(base.name)?.level === "copy";
  const rest = files.filter((f) => f !== base);
  if (isCopy) {
    if (rest.length > 0) throw new ChainError(`File [${rest[0]!.name}] cannot follow the copy backup [${base.name}]: copies have no checkpoints.`);
    return [base];
  }
  if (base.meta.incremental) throw new ChainError(`Base file [${base.name}] is marked incremental.`);

  // The linear part: checkpoints created one after another.
  const steps = rest.filter((f) => roleOf(f) === "step");
  const established: ChainFile[] = [base];
  const remaining = new Set(steps);
  for (let cp = base.meta.checkpointName; remaining.size > 0; ) {
    const index = checkpointIndex(cp);
    const next = [...remaining].filter((f) =>
      f.meta.incremental
        ? f.meta.parentCheckpoint === cp
        : // an inc that fell back to full: no parent, but the next checkpoint's name
          index !== null && f.meta.checkpointName === checkpointName(index + 1),
    );
    if (next.length === 0) break;
    if (next.length > 1) throw new ChainError(`Files ${next.map((f) => `[${f.name}]`).join(" and ")} both continue checkpoint [${cp}] of disk [${disk}].`);
    established.push(next[0]!);
    remaining.delete(next[0]!);
    cp = next[0]!.meta.checkpointName;
  }
  const reached = new Map(established.map((f, i) => [f.meta.checkpointName, i]));
  const earlierPoint = until !== undefined && reached.has(until);
  for (const stray of earlierPoint ? [] : remaining) {
    throw new ChainError(
      `File [${stray.name}] needs checkpoint [${stray.meta.parentCheckpoint || "?"}], which no file of disk [${disk}] provides` +
        ` (chain ends at [${established.at(-1)!.meta.checkpointName}]): a file of the chain is missing.`,
    );
  }

  // Cumulative files attach after the file that created their parent checkpoint.
  const leaves = new Map<number, ChainFile[]>();
  for (const leaf of rest.filter((f) => roleOf(f) === "leaf").sort(byDate)) {
    const at = reached.get(leaf.meta.parentCheckpoint);
    if (at === undefined) {
      if (earlierPoint) continue;
      const parent = leaf.meta.parentCheckpoint;
      // The original names an offline inc like the online inc of that checkpoint and replaces it.
      const replaced = parseDataFileName(leaf.name)?.ident === parent && leaf.meta.checkpointName === parent;
      throw new ChainError(
        `File [${leaf.name}] needs checkpoint [${parent}], which no file of disk [${disk}] provides` +
          (replaced
            ? `: it is an offline incremental that replaced the incremental which created [${parent}] (the original tool gives both the same name), so the changes up to [${parent}] are lost. Restore an earlier point with --until.`
            : "."),
      );
    }
    leaves.set(at, [...(leaves.get(at) ?? []), leaf]);
  }
  return established.flatMap((f, i) => [f, ...(leaves.get(i) ?? [])]);
}

/**
 * Cuts the chain for a point-in-time restore: after the file that created checkpoint `until`
 * (the full or inc). A diff carries the name of the checkpoint the *next* inc creates, and an
 * offline inc its parent's, so they are the cut point only when no file created `until`
 * (then the first of them, as the original). The original takes the first name match in mtime
 * order: `full → diff → inc` with `--until virtnbdbackup.1` gives it the diff's older state.
 */
export function cutChain(disk: string, chain: ChainFile[], until: string | undefined): ChainFile[] {
  if (!until) return chain;
  let at = chain.findIndex((f) => roleOf(f) !== "leaf" && f.meta.checkpointName === until);
  if (at < 0) at = chain.findIndex((f) => f.meta.checkpointName === until);
  if (at < 0) throw new ChainError(`Checkpoint [${until}] not found in the backup chain of disk [${disk}].`);
  return chain.slice(0, at + 1);
}

/** Checkpoint names a set's `checkpoints/` directory holds XML files for (`checkpoints/<name>.xml`). */
export function checkpointXmlNames(listing: readonly { name: string }[]): string[] {
  return listing.map((f) => checkpointOfXmlPath(f.name)).filter((n): n is string => !!n && checkpointIndex(n) !== null);
}

/**
 * Cross-checks a full chain with the checkpoints the set says were taken: the `.cpt` list and
 * the XML files in `checkpoints/` (written right after the `.cpt` entry; a second witness when
 * the list is missing or was edited). Every one of them from the chain's full on must be
 * created by a file of this disk, so a deleted newest incremental is noticed. `until` limits
 * the check to the checkpoints up to that point.
 */
export function checkChainAgainstCpt(disk: string, chain: ChainFile[], cpt: string[], until?: string, xml: readonly string[] = []): void {
  if (chain.length === 0) return;
  const extra = xml.filter((n) => !cpt.includes(n)).sort((a, b) => checkpointIndex(a)! - checkpointIndex(b)!);
  // Names only the XML files know go where their number puts them.
  const names = [...cpt];
  for (const n of extra) {
    const at = names.findIndex((c) => (checkpointIndex(c) ?? -1) > checkpointIndex(n)!);
    names.splice(at < 0 ? names.length : at, 0, n);
  }
  if (names.length === 0) return;
  const start = names.indexOf(chain[0]!.meta.checkpointName);
  if (start < 0) return; // the list belongs to another chain (e.g. a newer full elsewhere)
  const created = new Set(chain.filter((f) => roleOf(f) !== "leaf").map((f) => f.meta.checkpointName));
  const stop = until !== undefined && names.includes(until) ? names.indexOf(until) + 1 : names.length;
  for (const name of names.slice(start, stop)) {
    if (!created.has(name)) {
      const where = cpt.includes(name) ? "is listed in the checkpoint file" : `is recorded in [${CHECKPOINT_DIR}/${checkpointXmlName(name)}]`;
      throw new ChainError(
        `Checkpoint [${name}] ${where} but no data file of disk [${disk}] holds it: ` +
          `the file is missing or that backup run did not finish (use --until to restore an earlier point).`,
      );
    }
  }
}
