/**
 * The generations of a target directory (docs/backup-set.md, "Generations"): the top level is
 * generation 1, each `generation.<N>` folder (N ≥ 2) a later chain started over inside the same
 * target. Checkpoint names go on across generations, so one names a single generation.
 */
import { join } from "node:path";
import { StreamReader } from "../format/reader.js";
import { openSource, readdirEntries, type EntryInfo as Dirent } from "../storage/files.js";
import { CptError, readCpt } from "./cpt.js";
import { generationDirName, isCptFileName, isDataFileName, parseDataFileName, parseGenerationDirName } from "./layout.js";

export interface Generation {
  /** 1 for the top level, N for `generation.<N>`. */
  index: number;
  dir: string;
}

/** The entries of a directory; [] when it does not exist or is not a directory. */
async function entriesOf(dir: string): Promise<Dirent[]> {
  try {
    return await readdirEntries(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return [];
    throw e;
  }
}

const dataFilesIn = (entries: Dirent[]): string[] => entries.filter((e) => !e.isDirectory() && isDataFileName(e.name)).map((e) => e.name);

/** Every `generation.<N>` folder of `dir` (data or not), by N. */
function generationFolders(entries: Dirent[]): { n: number; name: string }[] {
  const out: { n: number; name: string }[] = [];
  for (const e of entries) {
    const n = parseGenerationDirName(e.name);
    if (n !== null && (e.isDirectory() || e.isSymbolicLink())) out.push({ n, name: e.name });
  }
  return out.sort((a, b) => a.n - b.n);
}

/**
 * The generations of a target, oldest first: the top level when it holds a data file (`*.data`),
 * then each `generation.<N>` folder holding one. A folder with only `.partial` files (a first
 * run that never finished) is none. [] for a directory without data, or no directory.
 */
export async function listGenerations(dir: string): Promise<Generation[]> {
  const entries = await entriesOf(dir);
  const out: Generation[] = [];
  if (dataFilesIn(entries).length > 0) out.push({ index: 1, dir });
  for (const { n, name } of generationFolders(entries)) {
    const sub = join(dir, name);
    if (dataFilesIn(await entriesOf(sub)).length > 0) out.push({ index: n, dir: sub });
  }
  return out;
}

/** The N of every `generation.<N>` folder of `dir` (data or not), ascending; [] without any. */
export async function generationNumbers(dir: string): Promise<number[]> {
  return generationFolders(await entriesOf(dir)).map((g) => g.n);
}

/** The newest generation's directory: `dir` itself when it has no generation folder with data. */
export async function newestGeneration(dir: string): Promise<string> {
  return (await listGenerations(dir)).at(-1)?.dir ?? dir;
}

/**
 * Where the backup side starts a new generation: `<dir>/generation.<max N + 1>`, at least
 * `generation.2`. Every `generation.<N>` folder counts, with data or not, so none is reused.
 */
export async function nextGenerationDir(dir: string): Promise<string> {
  const last = generationFolders(await entriesOf(dir)).at(-1)?.n ?? 1;
  return join(dir, generationDirName(last + 1));
}

/** A `.cpt` that is not a list of names lists nothing here (restore reports it when it reads it). */
async function cptLists(g: Generation, checkpoint: string): Promise<boolean> {
  for (const e of await entriesOf(g.dir)) {
    if (e.isDirectory() || !isCptFileName(e.name)) continue;
    try {
      if ((await readCpt(join(g.dir, e.name))).includes(checkpoint)) return true;
    } catch (err) {
      if (!(err instanceof CptError)) throw err;
    }
  }
  return false;
}

async function incFileNamed(g: Generation, checkpoint: string): Promise<boolean> {
  return dataFilesIn(await entriesOf(g.dir)).some((name) => {
    const parsed = parseDataFileName(name);
    return parsed?.level === "inc" && parsed.ident === checkpoint;
  });
}

/** A full/copy file whose stream metadata carries the checkpoint (raw images and unreadable files: no). */
async function baseFileCarries(g: Generation, checkpoint: string): Promise<boolean> {
  for (const name of dataFilesIn(await entriesOf(g.dir))) {
    const level = parseDataFileName(name)?.level;
    if (level !== "full" && level !== "copy") continue;
    let source;
    try {
      source = await openSource(join(g.dir, name));
    } catch {
      continue;
    }
    try {
      if ((await StreamReader.open(source, { trailer: false })).meta.checkpointName === checkpoint) return true;
    } catch {
      // a raw image or a damaged file: restore and verify report it
    } finally {
      await source.close();
    }
  }
  return false;
}

/**
 * The generation holding `checkpoint`: the one whose `.cpt` lists it; when no `.cpt` does, the
 * one with `<disk>.inc.<checkpoint>.data`; then the one whose full/copy file's metadata carries
 * it (a set without `.cpt`). Newest first at each step. null when no generation has it.
 */
export async function generationWithCheckpoint(dir: string, checkpoint: string): Promise<Generation | null> {
  const generations = (await listGenerations(dir)).reverse();
  for (const holds of [cptLists, incFileNamed, baseFileCarries]) {
    for (const g of generations) if (await holds(g, checkpoint)) return g;
  }
  return null;
}
