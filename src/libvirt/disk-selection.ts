/**
 * Which disks of a domain are backed up (or restored): docs/behaviour.md, "Disk selection", with the
 * original's log lines. Shared by virtnbdbackup and virtnbdrestore.
 */
import type { DomainDisk, DomainXml } from "./domain-xml.js";

export interface SelectedDisk {
  /** Target dev (`sda`, `vda`, …): names the NBD export and the backup files. */
  target: string;
  /** `<driver type=…>`: qcow2, raw, … */
  format: string;
  device: string;
  /** Host path of the image (file, block device, or resolved volume). */
  path: string;
  /** basename(path) */
  fileName: string;
  backingFiles: string[];
  discard: string | null;
  sourceType: string;
  /** Stored as a full raw image (format raw or a LUN). */
  raw: boolean;
  element: DomainDisk;
}

export interface SelectionOptions {
  include?: string | null;
  exclude?: string[];
  raw: boolean;
  /** Path of a `type='volume'` disk (storage pool lookup). */
  resolveVolume?: (pool: string, volume: string) => Promise<string>;
}

export interface SelectionLog {
  info(m: string): void;
  warning(m: string): void;
  error(m: string): void;
}

const basename = (p: string) => p.slice(p.lastIndexOf("/") + 1);

export async function selectDisks(domain: DomainXml, o: SelectionOptions, log: SelectionLog): Promise<SelectedDisk[]> {
  const out: SelectedDisk[] = [];
  for (const disk of domain.disks()) {
    const dev = disk.target;
    if (!dev) continue;
    const format = disk.format ?? "raw";
    const device = disk.device;
    if (o.exclude?.includes(dev)) {
      log.warning(`Excluding disk [${dev}] from backup as requested`);
      continue;
    }
    if (o.include && dev !== o.include) {
      log.info(`Skipping disk: [${dev}] as requested: does not match disk [${o.include}]`);
      continue;
    }
    if (device === "cdrom" || device === "floppy") {
      log.info(`Skipping attached [${device}] device: [${dev}].`);
      continue;
    }
    const src = disk.source;
    const type = disk.type ?? "file";
    let path: string | null = null;
    if (type === "volume") {
      if (!src?.pool || !src.volume || !o.resolveVolume) {
        log.error(`Unable to resolve volume of disk [${dev}]`);
        continue;
      }
      path = await o.resolveVolume(src.pool, src.volume);
    } else if (type === "file") {
      path = src?.file ?? null;
    } else if (type === "block") {
      if (format === "raw" && !o.raw) {
        log.warning(`Raw disk [${dev}] excluded by default, use option --raw to include.`);
        continue;
      }
      path = src?.dev ?? null;
    } else if (type === "network") {
      log.error(`Unsupported network disk type for disk [${dev}]`);
      continue;
    } else {
      log.error(`Unable to detect disk type [${type}] for disk [${dev}]`);
      continue;
    }
    if (!path) {
      log.error(`Disk [${dev}] has no source path`);
      continue;
    }
    if (!o.raw && (device === "lun" || format === "raw")) {
      if (device === "lun") log.warning(`Skipping direct attached lun [${dev}], use option --raw to include.`);
      else log.warning(`Raw disk [${dev}] excluded by default, use option --raw to include.`);
      continue;
    }
    out.push({
      target: dev,
      format,
      device,
      path,
      fileName: basename(path),
      backingFiles: disk.backingStoreFiles(),
      discard: disk.discard,
      sourceType: type,
      raw: format === "raw" || device === "lun",
      element: disk,
    });
  }
  return out;
}
