/**
 * The chains under the paths prune is given (docs/prune.md, "What a chain is"): each generation
 * of a target directory (the top level, `generation.<N>` folders), each chain of zip archives in
 * a folder of zips, and, for a folder that is neither, the targets and zip folders below it (the
 * monthly-folder layout: `/backup/<domain>/<month>/`). A chain is only ever deleted as a whole.
 */
import { lstat, readdirEntries, type EntryInfo as Dirent } from "../storage/files.js";
import { basename, dirname, join } from "node:path";
import { generationNumbers, listGenerations, type Generation } from "../backupset/generations.js";
import { CHECKPOINT_DIR, chainOfCheckpoint, isDataFileName } from "../backupset/layout.js";
import { DirectorySource } from "../storage/directory-source.js";
import { ZipSource } from "../storage/zip-source.js";
import { parseLocalIso, readSetFacts, type DataFileFacts, type SetFacts } from "./set-facts.js";

/**
 * How a chain leaves: `folder`: it is all of its folder (a `generation.<N>` folder, a target
 * with nothing else in it), which is renamed out of the way in one step, then removed;
 * `top-level`: generation 1 beside later generations, its files removed one by one;
 * `archives`: some zip archives of a folder.
 */
export type ChainShape = "folder" | "top-level" | "archives";

export interface Chain {
  /** Where it is, for messages; unique. */
  location: string;
  /** The folder holding its files. */
  dir: string;
  shape: ChainShape;
  /** top-level: data file names, archives: archive paths; dependants first, the base last. */
  removalOrder: string[];
  domain: string | null;
  /** "" for the default chain, else the `--chain` name its checkpoints carry. */
  chainName: string;
  /** When its full (or copy) backup was taken. */
  time: Date;
  /** Its backups (restore points): data files, or archives. */
  points: number;
  checkpoints: string[];
  /** Saved checkpoint XMLs' creation times (see set-facts.ts). */
  created: Map<string, number>;
  /** Why it must stay whatever the rules say (a run writes there, it cannot be dated); null: it may go. */
  held: string | null;
}

export interface Discovery {
  chains: Chain[];
  /** Folders a killed prune left renamed (`.<name>.pruning`): finished first. */
  leftovers: string[];
  /** Things found but not understood; they are left alone. */
  notes: string[];
}

const MAX_DEPTH = 4;
const PRUNING = /^\..+\.pruning(\.\d+)?$/;
export const isPruningLeftover = (name: string): boolean => PRUNING.test(name);

async function entriesOf(dir: string): Promise<Dirent[]> {
  return (await readdirEntries(dir)).sort((a, b) => (a.name < b.name ? -1 : 1));
}

/** Dependants newest first, then the bases. */
function removalOrderOf(data: DataFileFacts[]): string[] {
  const byDateDesc = (a: DataFileFacts, b: DataFileFacts) => (a.meta.date < b.meta.date ? 1 : a.meta.date > b.meta.date ? -1 : a.name < b.name ? 1 : -1);
  return [...data.filter((d) => !d.base).sort(byDateDesc), ...data.filter((d) => d.base)].map((d) => d.name);
}

function chainNameOf(facts: SetFacts): string {
  for (const name of [...facts.checkpoints, ...facts.data.map((d) => d.meta.checkpointName)]) {
    const chain = typeof name === "string" ? chainOfCheckpoint(name) : null;
    if (chain !== null) return chain;
  }
  return "";
}

/** The earliest base's date; null when no base has a readable one. */
function baseTime(data: DataFileFacts[]): Date | null {
  const times = data.filter((d) => d.base).map((d) => parseLocalIso(d.meta.date));
  if (times.length === 0 || times.some((t) => t === null)) return null;
  return new Date(Math.min(...times.map((t) => t!.getTime())));
}

function chainOf(location: string, dir: string, shape: ChainShape, facts: SetFacts, removalOrder: string[]): Chain {
  const time = baseTime(facts.data);
  let held: string | null = null;
  if (facts.partial) held = `a backup run writes here or was left unfinished ([${facts.partial}])`;
  else if (!time) held = "its full backup has no readable date";
  return {
    location,
    dir,
    shape,
    removalOrder,
    domain: facts.domain,
    chainName: chainNameOf(facts),
    time: time ?? new Date(0),
    points: facts.data.length,
    checkpoints: facts.checkpoints.length > 0 ? facts.checkpoints : facts.data.map((d) => d.meta.checkpointName).filter((n) => typeof n === "string" && n !== ""),
    created: facts.created,
    held,
  };
}

/** A folder holding only its set (files and `checkpoints/`), so it can go as a whole. */
async function holdsOnlyItsSet(dir: string): Promise<boolean> {
  return (await entriesOf(dir)).every((e) => !e.isDirectory() || e.name === CHECKPOINT_DIR);
}

/**
 * The generations of a target. A generation that no longer says its domain (generation 1 whose
 * `.cpt` and vmconfig a killed prune already removed) takes its target's: it is weighed with
 * the same chains again, and the next prune finishes it.
 */
async function targetChains(dir: string, generations: Generation[]): Promise<Chain[]> {
  const later = (await generationNumbers(dir)).length > 0;
  const out: Chain[] = [];
  for (const g of generations) {
    const facts = await readSetFacts(new DirectorySource(g.dir));
    const whole = g.index > 1 || (!later && (await holdsOnlyItsSet(dir)));
    const shape: ChainShape = whole ? "folder" : "top-level";
    out.push(chainOf(g.dir, g.dir, shape, facts, removalOrderOf(facts.data)));
  }
  const domain = out.find((c) => c.domain !== null)?.domain ?? null;
  return out.map((c) => (c.domain === null ? { ...c, domain } : c));
}

interface ArchiveFacts {
  path: string;
  facts: SetFacts;
}

/**
 * The chains of some zip archives: each archive with a full/copy starts one; an archive of incs
 * or diffs joins the chain that created its parent checkpoint. Archives that join nothing are notes.
 */
async function archiveChains(dir: string, archives: string[], notes: string[]): Promise<Chain[]> {
  const read: ArchiveFacts[] = [];
  for (const path of archives) {
    const set = await ZipSource.open([path]);
    try {
      read.push({ path, facts: await readSetFacts(set) });
    } finally {
      await set.close();
    }
  }
  const firstDate = (a: ArchiveFacts) => a.facts.data.map((d) => d.meta.date).sort()[0] ?? "";
  read.sort((a, b) => (firstDate(a) < firstDate(b) ? -1 : firstDate(a) > firstDate(b) ? 1 : a.path < b.path ? -1 : 1));
  const groups: { members: ArchiveFacts[]; made: Set<string> }[] = [];
  for (const a of read) {
    const made = a.facts.data.map((d) => d.meta.checkpointName);
    let group = a.facts.data.some((d) => d.base) ? undefined : groups.find((g) => a.facts.data.some((d) => g.made.has(d.meta.parentCheckpoint)));
    if (!group && !a.facts.data.some((d) => d.base)) {
      notes.push(`[${a.path}] continues no chain of [${dir}]: left alone.`);
      continue;
    }
    if (!group) groups.push((group = { members: [], made: new Set() }));
    group.members.push(a);
    for (const m of made) group.made.add(m);
  }
  return groups.map((g) => {
    const newest = g.members.at(-1)!.facts;
    const facts: SetFacts = {
      data: g.members.flatMap((m) => m.facts.data),
      checkpoints: newest.checkpoints,
      domain: g.members.map((m) => m.facts.domain).find((d) => d !== null) ?? null,
      created: new Map(g.members.flatMap((m) => [...m.facts.created])),
      partial: null,
    };
    const order = [...g.members.slice(1).map((m) => m.path).reverse(), g.members[0]!.path];
    return { ...chainOf(g.members[0]!.path, dir, "archives", facts, order), points: g.members.length };
  });
}

async function walk(path: string, depth: number, found: Discovery): Promise<void> {
  const info = await lstat(path);
  if (info.isFile() && path.endsWith(".zip")) {
    found.chains.push(...(await archiveChains(dirname(path), [path], found.notes)));
    return;
  }
  if (!info.isDirectory()) return;
  const entries = await entriesOf(path);
  for (const e of entries) if (e.isDirectory() && isPruningLeftover(e.name)) found.leftovers.push(join(path, e.name));
  const generations = await listGenerations(path);
  if (generations.length > 0) {
    found.chains.push(...(await targetChains(path, generations)));
    return;
  }
  const archives = entries.filter((e) => e.isFile() && e.name.endsWith(".zip")).map((e) => join(path, e.name));
  if (archives.length > 0 && !entries.some((e) => isDataFileName(e.name))) {
    found.chains.push(...(await archiveChains(path, archives, found.notes)));
    return;
  }
  if (depth >= MAX_DEPTH) return;
  for (const e of entries) {
    if (e.isDirectory() && !isPruningLeftover(e.name) && e.name !== CHECKPOINT_DIR) await walk(join(path, e.name), depth + 1, found);
  }
}

/** Every chain under `paths` (each path: a target, a zip archive, a folder of zips, or a folder of those). */
export async function discoverChains(paths: readonly string[]): Promise<Discovery> {
  const found: Discovery = { chains: [], leftovers: [], notes: [] };
  for (const p of paths) await walk(p, 0, found);
  const seen = new Set<string>();
  found.chains = found.chains.filter((c) => !seen.has(c.location) && (seen.add(c.location), true));
  found.leftovers = [...new Set(found.leftovers)];
  return found;
}

/** Chains prune weighs against each other: one domain's, of one `--chain` name. */
export function groupKey(c: Chain): string {
  return c.domain === null ? `?${c.location}` : `${c.domain}\0${c.chainName}`;
}

export const describeGroup = (c: Chain): string =>
  c.domain === null ? `[${basename(c.location)}] (domain unknown)` : `domain [${c.domain}]${c.chainName ? ` chain [${c.chainName}]` : ""}`;
