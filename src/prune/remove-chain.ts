/**
 * Removing a chain so that a prune killed at any step leaves every other chain whole and this
 * one either whole, still a valid shorter chain, or out of sight (docs/prune.md, "A killed
 * prune"): a folder is first renamed to `.<name>.pruning` (one durable step), then removed;
 * generation 1 beside later generations loses its side files, then its data files dependants
 * first (each file's `.chksum`/`.integrity` before the file), the base last; zip archives go
 * dependants first, the base last. Each step is made durable (the folder fsynced) before the next.
 */
import { isObjectPath, lstat, readdirEntries, removeTree, rename, unlink } from "../storage/files.js";
import { basename, dirname, join } from "node:path";
import { CHECKPOINT_DIR, checksumFileName, integrityFileName, isDataFileName, parseGenerationDirName } from "../backupset/layout.js";
import { fsyncDirectory } from "../storage/durable.js";
import { isPruningLeftover, type Chain } from "./chains.js";

/** A step of a removal, for the log (and the tests that kill a prune between steps). */
export type RemovalStep = (what: string) => void;

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw e;
  }
}

async function unlinkDurably(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  await fsyncDirectory(dirname(path));
}

/** `.<name>.pruning`, or with `.2`, `.3`… when a leftover of that name is still there. */
async function asideName(dir: string): Promise<string> {
  const base = join(dirname(dir), `.${basename(dir)}.pruning`);
  for (let n = 1; ; n++) {
    const candidate = n === 1 ? base : `${base}.${n}`;
    if (!(await exists(candidate))) return candidate;
  }
}

/** Removes a folder a prune renamed aside (now, or a killed one earlier). */
export async function finishLeftover(path: string): Promise<void> {
  await removeTree(path);
  await fsyncDirectory(dirname(path));
}

async function removeFolder(chain: Chain, step: RemovalStep): Promise<void> {
  const aside = await asideName(chain.dir);
  await rename(chain.dir, aside);
  await fsyncDirectory(dirname(chain.dir));
  step(`renamed [${chain.dir}] to [${aside}]`);
  await finishLeftover(aside);
  step(`removed [${aside}]`);
}

/** Generation 1's files at a target's top level: not its data files, not the later generations. */
async function sideFilesOf(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdirEntries(dir)) {
    if (e.isDirectory()) {
      if (e.name === CHECKPOINT_DIR) out.push(e.name);
      continue;
    }
    if (isDataFileName(e.name) || isPruningLeftover(e.name) || parseGenerationDirName(e.name) !== null) continue;
    if (e.name.endsWith(".data.chksum") || e.name.endsWith(".data.integrity")) continue; // with their data file
    out.push(e.name);
  }
  return out.sort();
}

async function removeTopLevel(chain: Chain, step: RemovalStep): Promise<void> {
  for (const name of await sideFilesOf(chain.dir)) {
    const path = join(chain.dir, name);
    if (name === CHECKPOINT_DIR) await finishLeftover(path);
    else await unlinkDurably(path);
    step(`removed [${path}]`);
  }
  for (const name of chain.removalOrder) {
    for (const companion of [checksumFileName(name), integrityFileName(name), name]) await unlinkDurably(join(chain.dir, companion));
    step(`removed [${join(chain.dir, name)}]`);
  }
}

async function removeArchives(chain: Chain, step: RemovalStep): Promise<void> {
  for (const archive of chain.removalOrder) {
    await unlinkDurably(archive);
    step(`removed [${archive}]`);
  }
}

/**
 * A generation folder in a bucket: no rename of a folder there (it would copy every object), so
 * its files go in the top level's order (side files, then data dependants first, the base
 * last: what is left is a shorter valid chain), then whatever else the prefix holds.
 */
async function removeObjectFolder(chain: Chain, step: RemovalStep): Promise<void> {
  await removeTopLevel(chain, step);
  await removeTree(chain.dir);
  step(`removed [${chain.dir}]`);
}

export async function removeChain(chain: Chain, step: RemovalStep): Promise<void> {
  if (chain.shape === "folder" && isObjectPath(chain.dir)) await removeObjectFolder(chain, step);
  else if (chain.shape === "folder") await removeFolder(chain, step);
  else if (chain.shape === "top-level") await removeTopLevel(chain, step);
  else await removeArchives(chain, step);
}
