/**
 * File names of a backup set (docs/backup-set.md), shared by backup, restore, verify and map.
 * `<name>.partial` (a file still being written) is the storage layer's convention:
 * `partialPath` in src/storage/durable.ts.
 */
import { partialPath } from "../storage/durable.js";

export type Level = "copy" | "full" | "inc" | "diff";

/** `<disk>.full.data`, `<disk>.copy.data`, `<disk>.inc.<checkpoint>.data`, `<disk>.diff.<ts>.data`. */
export function dataFileName(disk: string, level: Level, ident: string): string {
  return level === "full" || level === "copy" ? `${disk}.${level}.data` : `${disk}.${level}.${ident}.data`;
}

/** A data file's name (`*.data`); `parseDataFileName` says what it means. */
export const isDataFileName = (name: string): boolean => name.endsWith(".data");
/** `*.data*`: a data file or a file of its (`.chksum`, `.integrity`, `.partial`): the original's test for a used directory. */
export const mentionsDataFile = (name: string): boolean => name.includes(".data");
/** `<datafile>.chksum`: the data file's Adler-32 as decimal text. */
export const checksumFileName = (dataFile: string): string => `${dataFile}.chksum`;
/** `<datafile>.integrity`: per-frame records of the data file (ours, src/format/integrity.ts). */
export const integrityFileName = (dataFile: string): string => `${dataFile}.integrity`;

export const cptFileName = (domain: string): string => `${domain}.cpt`;
export const isCptFileName = (name: string): boolean => name.endsWith(".cpt");
/** Crash safety marker of an unfinished run, `<dom>.run.partial` (src/backup/run-marker.ts). */
export const runMarkerFileName = (domain: string): string => partialPath(`${domain}.run`);
export const vmconfigFileName = (ident: string): string => `vmconfig.${ident}.xml`;
/** `vmconfig*.xml`: a VM config saved by some run. */
export const isVmconfigFileName = (name: string): boolean => /^vmconfig.*\.xml$/.test(name);
export const qcowJsonFileName = (disk: string, ident: string): string => `${disk}.${ident}.qcow.json`;
/** A qcow.json file of `disk` (any run). */
export const isQcowJsonFileNameOf = (disk: string, name: string): boolean => name.startsWith(`${disk}.`) && name.endsWith(".qcow.json");

/** The folder of checkpoint XMLs in a set (unless `--checkpointdir` puts them elsewhere). */
export const CHECKPOINT_DIR = "checkpoints";
export const checkpointXmlName = (checkpoint: string): string => `${checkpoint}.xml`;
export const isCheckpointXmlName = (name: string): boolean => name.endsWith(".xml");
/** The checkpoint a set path `checkpoints/<name>.xml` holds the XML of, or null. */
export function checkpointOfXmlPath(path: string): string | null {
  const parts = path.split("/");
  if (parts.length !== 2 || parts[0] !== CHECKPOINT_DIR || !isCheckpointXmlName(parts[1]!)) return null;
  return parts[1]!.slice(0, -".xml".length) || null;
}

export const autostartFileName = (ident: string): string => `autostart.${ident}`;
export const isAutostartFileName = (name: string): boolean => name.startsWith("autostart.");
export const osinfoFileName = (ident: string): string => `osinfo.${ident}`;
/** Boot files (loader, nvram, kernel, initrd): `<basename>` for copy, `<basename>.<ident>` otherwise. */
export const bootFileName = (basename: string, level: Level, ident: string): string =>
  level === "copy" ? basename : `${basename}.${ident}`;

export const CHECKPOINT_PREFIX = "virtnbdbackup";
/**
 * A chain's checkpoint names (docs/behaviour.md, "Independent chains"): `virtnbdbackup.<N>` for the
 * default chain, `virtnbdbackup.<chain>.<N>` for a target backed up with `--chain <chain>`.
 */
export const checkpointName = (index: number, chain = ""): string => (chain ? `${CHECKPOINT_PREFIX}.${chain}.${index}` : `${CHECKPOINT_PREFIX}.${index}`);
/** A valid `--chain` name: letters, digits, `_` and `-`, not only digits (so names never read as an index). */
export const isChainName = (chain: string): boolean => /^[A-Za-z0-9_-]{1,64}$/.test(chain) && !/^\d+$/.test(chain);
/** The index of a checkpoint of `chain` (`virtnbdbackup.<N>` / `virtnbdbackup.<chain>.<N>`), or null for any other name. */
export function checkpointIndex(name: string, chain = ""): number | null {
  const prefix = chain ? `${CHECKPOINT_PREFIX}.${chain}.` : `${CHECKPOINT_PREFIX}.`;
  if (!name.startsWith(prefix)) return null;
  const rest = name.slice(prefix.length);
  return /^\d+$/.test(rest) ? Number(rest) : null;
}
/** Any checkpoint name this tool (or the original) creates: it contains `virtnbdbackup`. */
export const isOwnCheckpointName = (name: string): boolean => name.includes(CHECKPOINT_PREFIX);

/**
 * A chain started over inside a target (docs/backup-set.md, "Generations"): the target's top
 * level holds generation 1, `<target>/generation.<N>` (N ≥ 2) each later one, every one a
 * complete set of the original's layout. Checkpoint numbers go on across generations.
 */
export const generationDirName = (n: number): string => `generation.${n}`;
/** N of a `generation.<N>` folder name (N ≥ 2), or null. */
export function parseGenerationDirName(name: string): number | null {
  const m = /^generation\.(\d+)$/.exec(name);
  return m && Number(m[1]) >= 2 ? Number(m[1]) : null;
}

/** Unix seconds as the original's diff ident (`int(time.time())`). */
export const unixIdent = (now = Date.now()): string => String(Math.floor(now / 1000));

/** `backup.<level>.<MMDDYYYYHHMMSS>.log` in local time; level as given on the command line. */
export function backupLogFileName(levelAsGiven: string, now = new Date()): string {
  const p = (n: number) => String(n).padStart(2, "0");
  const stamp = `${p(now.getMonth() + 1)}${p(now.getDate())}${now.getFullYear()}${p(now.getHours())}${p(now.getMinutes())}${p(now.getSeconds())}`;
  return `backup.${levelAsGiven}.${stamp}.log`;
}

/** What a data file name says (not trusted for chain order; the metadata is). */
export function parseDataFileName(name: string): { disk: string; level: Level; ident: string | null } | null {
  const m = /^(.+?)\.(full|copy)\.data$/.exec(name) ?? /^(.+?)\.(inc|diff)\.(.+)\.data$/.exec(name);
  if (!m) return null;
  return { disk: m[1]!, level: m[2] as Level, ident: m[3] ?? null };
}

/** The chain a checkpoint name of ours belongs to: "" for `virtnbdbackup.<N>`, `<chain>` for `virtnbdbackup.<chain>.<N>`; null otherwise. */
export function chainOfCheckpoint(name: string): string | null {
  if (checkpointIndex(name) !== null) return "";
  const m = /^virtnbdbackup\.(.+)\.(\d+)$/.exec(name);
  return m && isChainName(m[1]!) ? m[1]! : null;
}
