/**
 * The target directory rules of the original (docs/behaviour.md, "Target directory rules"):
 * auto-level resolution, refusing full/copy into a used directory, inc/diff without a full,
 * and leftovers of failed runs.
 */
import { readdir } from "../storage/files.js";
import { mentionsDataFile, parseDataFileName } from "../backupset/layout.js";
import { isPartialPath } from "../storage/durable.js";

export class TargetDirError extends Error {
  constructor(readonly lines: string[]) {
    super(lines[0]);
  }
}

export interface TargetDirState {
  /** No file matching `*.data*` (also `.data.partial`, `.data.chksum`), or no directory. */
  empty: boolean;
  /** A `*.full.data` file exists. */
  hasFull: boolean;
  /** `*.partial` files (data files or side files of an unfinished run). */
  partials: string[];
}

export async function inspectTargetDir(dir: string): Promise<TargetDirState> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return { empty: true, hasFull: false, partials: [] };
    throw e;
  }
  return {
    empty: !names.some(mentionsDataFile),
    hasFull: names.some((n) => parseDataFileName(n)?.level === "full"),
    partials: names.filter(isPartialPath),
  };
}

export type GivenLevel = "copy" | "full" | "inc" | "diff" | "auto";

export interface LevelDecision {
  level: "copy" | "full" | "inc" | "diff";
  message?: string;
}

/** Resolves `auto` and applies the directory checks; `skipContentCheck` for stdout, -s and -k. */
export function decideLevel(given: GivenLevel, state: TargetDirState, dir: string, skipContentCheck: boolean): LevelDecision {
  if (given === "auto") {
    if (state.empty) return { level: "full", message: "Backup mode auto, target folder is empty: executing full backup." };
    if (!state.hasFull) {
      throw new TargetDirError([`Can't execute switch to auto incremental backup: specified target folder [${dir}] does not contain full backup.`]);
    }
    return { level: "inc", message: "Backup mode auto: executing incremental backup." };
  }
  if ((given === "full" || given === "copy") && !state.empty && !skipContentCheck) {
    throw new TargetDirError(["Target directory already contains full or copy backup."]);
  }
  if ((given === "inc" || given === "diff") && !state.hasFull && !skipContentCheck) {
    throw new TargetDirError([`Unable to execute [${given}] backup: No full backup found in target directory: [${dir}]`]);
  }
  return { level: given };
}

/** The original's refusal of inc/diff after a failed run (any `*.partial`). */
export function partialFailure(state: TargetDirState, dir: string): TargetDirError | null {
  if (state.partials.length === 0) return null;
  return new TargetDirError([
    `Partial backup found in target directory: [${dir}]`,
    "One of the last backups seems to have failed.",
    "Consider re-executing full backup.",
  ]);
}
