/** The VM config side of restore: which vmconfig to use, and `-c` adjustments (docs/behaviour.md, "Config adjustment"). */
import { isVmconfigFileName, vmconfigFileName } from "../backupset/layout.js";
import type { DomainXml } from "../libvirt/domain-xml.js";
import type { SetFile } from "../storage/set-source.js";

const byMtime = (a: SetFile, b: SetFile) => a.mtimeMs - b.mtimeMs || (a.name < b.name ? -1 : 1);

/**
 * The vmconfig file to restore with: with `--until X`, `vmconfig.X.xml` when it exists
 * (the original picks by position, which breaks on sets with diffs); else the newest.
 */
export function chooseVmConfig(files: SetFile[], until: string | null): SetFile | null {
  const configs = files.filter((f) => isVmconfigFileName(f.name)).sort(byMtime);
  if (configs.length === 0) return null;
  if (until) {
    const exact = configs.find((f) => f.name === vmconfigFileName(until));
    if (exact) return exact;
    const index = Number(until.split(".").at(-1));
    if (Number.isInteger(index) && index >= 0 && index < configs.length) return configs[index]!;
  }
  return configs.at(-1)!;
}

export interface AdjustLog {
  warning(m: string): void;
}

/** Drops cdrom/floppy, raw disks (unless --raw), and the first backing store of every disk. */
export function adjustCommonDisks(domain: DomainXml, keepRaw: boolean, log: AdjustLog): void {
  for (const disk of domain.disks()) {
    if (disk.device === "cdrom" || disk.device === "floppy") {
      disk.remove();
      continue;
    }
    if (disk.format === "raw" && !keepRaw) {
      log.warning(`Removing raw disk [${disk.target}] from the adjusted config.`);
      disk.remove();
      continue;
    }
    disk.removeFirstBackingStore();
  }
}

/** Points a restored disk at its new image (and data file). */
export function adjustRestoredDisk(domain: DomainXml, target: string, imagePath: string, dataFilePath: string | null): void {
  const disk = domain.disk(target);
  if (!disk) return;
  if (dataFilePath && disk.dataStore) disk.setDataStorePath(dataFilePath);
  disk.setSourceFile(imagePath);
  if (disk.source?.dev) disk.setSourceDev(imagePath);
}

/** The name of the restored copy: `--name`, else `restore_<name>` (kept when it already starts with `restore`). */
export function restoredName(original: string, name: string | null): string {
  if (name) return name;
  return original.startsWith("restore") ? original : `restore_${original}`;
}

/** New name (`restoredName`) and no uuid, so the copy can live next to the original. */
export function adjustIdentity(domain: DomainXml, name: string | null): void {
  domain.removeUuid();
  domain.name = restoredName(domain.name, name);
}
