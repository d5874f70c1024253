/**
 * The files saved with every run besides the disk data (docs/backup-set.md, "Side files"):
 * vmconfig, qcow.json per qcow disk, loader/nvram/kernel/initrd copies, an emulated TPM's
 * state, autostart, osinfo.
 * In stdout mode they stay in the working directory and are added to the zip as well.
 */
import { join } from "node:path";
import { autostartFileName, bootFileName, osinfoFileName, qcowJsonFileName, vmconfigFileName, type Level } from "../backupset/layout.js";
import type { Host } from "../host/host.js";
import { qemuImgInfoJson } from "../qemu/img.js";
import { writeFileDurably } from "../storage/durable.js";
import type { BackupTarget } from "../storage/target.js";
import { pythonJsonDumps } from "../util/python-json.js";
import type { SelectedDisk } from "../libvirt/disk-selection.js";
import type { DomainXml } from "../libvirt/domain-xml.js";
import { tpmStateDir, tpmStateFile } from "../libvirt/tpm-state.js";

export interface SideFileLog {
  info(m: string): void;
  warning(m: string): void;
  error(m: string): void;
}

export interface SideFileContext {
  dir: string;
  /** Zip target in stdout mode (files are also added to it). */
  archive: BackupTarget | null;
  host: Host;
  level: Level;
  ident: string;
  log: SideFileLog;
}

/**
 * A side file that could not be written (disk full, I/O error): unlike the original, which only
 * warns for most of them, an error: the set is incomplete, the run exits 1 and keeps its marker.
 */
export class SideFileWriteError extends Error {}

async function save(ctx: SideFileContext, name: string, data: string | Uint8Array): Promise<string> {
  const path = join(ctx.dir, name);
  try {
    // Side files of one ident are rewritten by a retried run: replace is harmless for them.
    await writeFileDurably(path, data, true);
    if (ctx.archive) await ctx.archive.putFile(name, data);
  } catch (e) {
    throw new SideFileWriteError((e as Error).message);
  }
  return path;
}

export async function saveVmConfig(ctx: SideFileContext, xml: string): Promise<void> {
  const path = join(ctx.dir, vmconfigFileName(ctx.ident));
  ctx.log.info(`Saving VM config to: [${path}]`);
  try {
    await save(ctx, vmconfigFileName(ctx.ident), xml);
  } catch (e) {
    ctx.log.error(`Failed to save VM config: [${(e as Error).message}]`);
  }
}

export async function saveBootFiles(ctx: SideFileContext, paths: { loader?: string; nvram?: string; kernel?: string; initrd?: string }): Promise<void> {
  for (const [kind, path] of Object.entries(paths)) {
    if (!path) continue;
    const name = bootFileName(path.slice(path.lastIndexOf("/") + 1), ctx.level, ctx.ident);
    try {
      const data = await ctx.host.readFile(path);
      const saved = await save(ctx, name, data);
      ctx.log.info(`Save additional boot config [${kind}] to: [${saved}]`);
    } catch (e) {
      if (e instanceof SideFileWriteError) ctx.log.error(`Failed to save boot file [${path}]: ${e.message}`);
      else ctx.log.warning(`Failed to save boot file [${path}]: ${(e as Error).message}`);
    }
  }
}

/**
 * An emulated TPM's state (docs/behaviour.md, "TPM state"), read in the same run as the disks:
 * saved as `<state file>.<ident>` (`tpm2-00.permall.virtnbdbackup.0`), like a boot file.
 */
export async function saveTpmState(ctx: SideFileContext, domXml: DomainXml): Promise<void> {
  const uuid = domXml.uuid;
  for (const tpm of domXml.tpms()) {
    const file = tpmStateFile(tpm);
    if (!file || !uuid) continue;
    const path = `${tpmStateDir(uuid, file)}/${file.name}`;
    let data: Buffer;
    try {
      data = await ctx.host.readFile(path);
    } catch (e) {
      ctx.log.warning(`Unable to read the TPM state [${path}]: ${(e as Error).message}: it is not part of this backup.`);
      continue;
    }
    try {
      const saved = await save(ctx, bootFileName(file.name, ctx.level, ctx.ident), data);
      ctx.log.info(`Saved TPM state [${path}] to: [${saved}]`);
    } catch (e) {
      ctx.log.error(`Failed to save TPM state [${path}]: ${(e as Error).message}`);
    }
  }
}

/** `qemu-img info` of each qcow disk, or why it failed; started while the disks are copied. */
export type QcowInfo = Map<string, Promise<string | Error>>;

/**
 * Starts `qemu-img info` of the qcow disks (its own process, ~40 ms): run beside the copy, it
 * is no longer part of what a run costs after its data (README, "Performance").
 */
export function startQcowInfo(host: Host, disks: SelectedDisk[]): QcowInfo {
  const info: QcowInfo = new Map();
  for (const disk of disks) {
    if (disk.format.startsWith("qcow")) info.set(disk.target, qemuImgInfoJson(host, disk.path).catch((e: Error) => e));
  }
  return info;
}

/** Saves what `startQcowInfo` read, disk by disk. */
export async function saveQcowInfo(ctx: SideFileContext, disks: SelectedDisk[], info: QcowInfo): Promise<void> {
  for (const disk of disks) {
    const json = await info.get(disk.target);
    if (json === undefined) continue;
    if (json instanceof Error) {
      ctx.log.warning(`Failed to read qcow image info: [${json.message}]`);
      continue;
    }
    try {
      const path = await save(ctx, qcowJsonFileName(disk.target, ctx.ident), json);
      ctx.log.info(`Saved qcow image config to: [${path}]`);
    } catch (e) {
      ctx.log.error(`Failed to save qcow image config: [${(e as Error).message}]`);
    }
  }
}

/** autostart and osinfo live in the directory only (never in the zip, as in the original). */
export async function saveAutostartAndOsinfo(ctx: SideFileContext, autostart: boolean, osinfo: Record<string, unknown> | null): Promise<void> {
  if (autostart) {
    try {
      await writeFileDurably(join(ctx.dir, autostartFileName(ctx.ident)), "True", true);
      ctx.log.info("Autostart setting configured for virtual machine.");
    } catch (e) {
      ctx.log.error(`Failed to save autostart information: [${(e as Error).message}]`);
    }
  }
  if (osinfo) {
    try {
      await writeFileDurably(join(ctx.dir, osinfoFileName(ctx.ident)), pythonJsonDumps(osinfo as never, 4), true);
    } catch (e) {
      ctx.log.error(`Failed to save osinfo data: [${(e as Error).message}]`);
    }
  }
}
