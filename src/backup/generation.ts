/**
 * The generation a backup run writes into (docs/backup-set.md, "Generations"): an inc/diff/auto
 * continues the target's latest `generation.<N>` folder (the top level when there is none); a
 * chain that cannot continue starts the next one.
 */
import { mkdir } from "../storage/files.js";
import { basename, join, resolve } from "node:path";
import { generationNumbers, nextGenerationDir } from "../backupset/generations.js";
import { CHECKPOINT_DIR, cptFileName, generationDirName, parseGenerationDirName } from "../backupset/layout.js";
import type { BackupArgs } from "./options.js";
import { readCpt } from "../backupset/cpt.js";
import { highestIndex } from "./checkpoints.js";
import type { Preflight, RunContext, RunPlace } from "./run-context.js";

/** The latest generation folder of `target` and its number; the target itself (1) without one. */
export async function latestGeneration(target: string): Promise<{ dir: string; number: number }> {
  const n = (await generationNumbers(target)).at(-1);
  return n === undefined ? { dir: target, number: 1 } : { dir: join(target, generationDirName(n)), number: n };
}

/** Creates the next generation folder. */
export async function createNextGeneration(target: string): Promise<{ dir: string; number: number }> {
  const dir = await nextGenerationDir(target);
  await mkdir(dir, { recursive: true });
  return { dir, number: parseGenerationDirName(basename(dir))! };
}

/** The paths of a run writing into `generation` of `target` (`-C` gets a `generation.<N>` folder of its own). */
export function placeIn(args: BackupArgs, stdoutMode: boolean, target: string, generation: { dir: string; number: number }): RunPlace {
  const outDir = generation.dir;
  let checkpointDir = join(outDir, CHECKPOINT_DIR);
  if (args.checkpointdir) checkpointDir = generation.number === 1 ? resolve(args.checkpointdir) : join(resolve(args.checkpointdir), generationDirName(generation.number));
  return { stdoutMode, target, generation: generation.number, outDir, checkpointDir, cptPath: join(outDir, cptFileName(args.domain)), chain: args.chain };
}

/**
 * The chain cannot continue (`cause`): the target's next generation starts with a full (online)
 * or a copy (offline: no checkpoint can be made), its checkpoint index after every one the
 * chain used so far. One WARNING names the cause; the older generations stay as they are.
 */
export async function startNewGeneration(r: RunContext, m: Preflight, cause: string): Promise<[RunContext, Preflight]> {
  const next = await createNextGeneration(r.target);
  const level = m.offline ? "copy" : "full";
  r.log.warning(`Chain of [${r.outDir}] cannot continue: ${cause}. Starting a new chain in [${next.dir}] with a ${level} backup.`);
  const place = placeIn(r.args, r.stdoutMode, r.target, next);
  await mkdir(place.checkpointDir, { recursive: true });
  const run: RunContext = { ...r, ...place, dirState: { empty: true, hasFull: false, partials: [] } };
  const firstIndex = (await highestIndexInTarget(r.target, r.args.domain, r.chain)) + 1;
  return [run, { ...m, level, cpt: [], firstIndex, startsNewGeneration: true }];
}

/** The highest checkpoint index of `chain` that any generation of the target lists (-1: none). */
async function highestIndexInTarget(target: string, domain: string, chain: string): Promise<number> {
  const dirs = [target, ...(await generationNumbers(target)).map((n) => join(target, generationDirName(n)))];
  let highest = -1;
  for (const dir of dirs) highest = Math.max(highest, highestIndex(await readCpt(join(dir, cptFileName(domain))), chain));
  return highest;
}
