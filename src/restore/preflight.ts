/**
 * What a restore checks before it creates or writes anything (docs/behaviour.md, "Restore"):
 * the disk asked for with `-d` has data files in the set, and the name `-D` will define the
 * domain under is free.
 */
import { isDataFileName, parseDataFileName } from "../backupset/layout.js";
import type { Connection } from "../libvirt/connection.js";
import { VIR_ERR_NO_DOMAIN } from "../libvirt/constants.js";
import { isLibvirtError } from "../libvirt/errors.js";
import type { Logger } from "../report/log.js";
import type { SetFile } from "../storage/set-source.js";

/** The disks the set holds data files of (top level), in name order. */
export function disksInSet(listing: SetFile[]): string[] {
  const disks = new Set<string>();
  for (const f of listing) {
    if (f.name.includes("/") || !isDataFileName(f.name)) continue;
    const parsed = parseDataFileName(f.name);
    if (parsed) disks.add(parsed.disk);
  }
  return [...disks].sort();
}

/**
 * `-d <disk>` must name a disk the set has data of; else one ERROR line (the original's
 * "Unable to parse disks from config", with the disk and the set's disks). False: refused.
 */
export function checkRequestedDisk(disk: string | null, listing: SetFile[], log: Logger): boolean {
  if (!disk) return true;
  const disks = disksInSet(listing);
  if (disks.includes(disk)) return true;
  log.error(`Unable to parse disks from config: the backup set has no disk [${disk}], its disks: [${disks.join(", ")}]`);
  return false;
}

/** The part of a libvirt connection the name check needs (a fake in unit tests). */
export type DomainLookup = Pick<Connection, "lookupDomain">;

/** `-D`: a domain of that name must not exist yet; else one ERROR line. False: refused. */
export async function checkDefineName(libvirt: DomainLookup, name: string, log: Logger): Promise<boolean> {
  try {
    const existing = await libvirt.lookupDomain(name);
    existing.free();
  } catch (e) {
    if (isLibvirtError(e, VIR_ERR_NO_DOMAIN)) return true;
    throw e;
  }
  log.error(`Failed to define domain: a domain named [${name}] already exists: restore with another -N/--name`);
  return false;
}
