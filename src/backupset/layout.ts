/**
 * File names of a backup set (docs/backup-set.md), shared by backup and restore.
 */

export type Level = "copy" | "full" | "inc" | "diff";

/** `<disk>.full.data`, `<disk>.copy.data`, `<disk>.inc.<checkpoint>.data`, `<disk>.diff.<ts>.data`. */
export function dataFileName(disk: string, level: Level, ident: string): string {
  return level === "full" || level === "copy" ? `${disk}.${level}.data` : `${disk}.${level}.${ident}.data`;
}

export const PARTIAL_SUFFIX = ".partial";
export const partialName = (name: string): string => `${name}${PARTIAL_SUFFIX}`;
export const cptFileName = (domain: string): string => `${domain}.cpt`;
export const vmconfigFileName = (ident: string): string => `vmconfig.${ident}.xml`;
export const qcowJsonFileName = (disk: string, ident: string): string => `${disk}.${ident}.qcow.json`;
export const checkpointXmlName = (checkpoint: string): string => `${checkpoint}.xml`;
export const autostartFileName = (ident: string): string => `autostart.${ident}`;
export const osinfoFileName = (ident: string): string => `osinfo.${ident}`;
/** Boot files (loader, nvram, kernel, initrd): `<basename>` for copy, `<basename>.<ident>` otherwise. */
export const bootFileName = (basename: string, level: Level, ident: string): string =>
  level === "copy" ? basename : `${basename}.${ident}`;

export const CHECKPOINT_PREFIX = "virtnbdbackup";
export const checkpointName = (index: number): string => `${CHECKPOINT_PREFIX}.${index}`;

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
