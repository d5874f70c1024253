/**
 * The libvirt side of an online backup (docs/behaviour.md, "Online backup job"): pull-mode job XML with scratch
 * files, pause/freeze around `backupBegin`, and the abort that ends the job.
 */
import { randomInt } from "node:crypto";
import { join } from "node:path";
import * as C from "../libvirt/constants.js";
import type { Domain } from "../libvirt/domain.js";
import { isLibvirtError } from "../libvirt/errors.js";
import { buildBackupXml, buildCheckpointXml, type BackupServer } from "../libvirt/backup-xml.js";
import type { SelectedDisk } from "../libvirt/disk-selection.js";
import { setTimeout as sleep } from "node:timers/promises";
import { NbdPortsError, onFreePort, type NbdPortPool } from "../connect/nbd-ports.js";
import { awaitLater } from "../util/in-flight.js";

export interface JobLog {
  debug(m: string): void;
  info(m: string): void;
  warning(m: string): void;
}

export class JobStartError extends Error {}

const SCRATCH_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const randomTag = () => Array.from({ length: 5 }, () => SCRATCH_CHARS[randomInt(SCRATCH_CHARS.length)]).join("");

/**
 * Where libvirt's NBD server listens: a unix socket, or TCP on a port of `ports` on the
 * hypervisor `name` (a range: the next port while libvirt reports one in use).
 */
export type JobServer = { transport: "unix"; socket: string } | { tls: boolean; name: string; ports: NbdPortPool };

export interface JobStartOptions {
  domain: Domain;
  disks: SelectedDisk[];
  server: JobServer;
  scratchDir: string;
  /** Parent checkpoint for inc/diff. */
  incremental: string | null;
  /** Checkpoint created with the job (full/inc). */
  checkpoint: { name: string; parent: string } | null;
  pause: boolean;
  freezeMountpoints: string[] | null;
  /**
   * libvirt's word that the domain has no guest agent channel (its "not configured" error to an
   * earlier agent call): no freeze is tried, the warning quotes it. A definition without the
   * channel fails every agent call alike.
   */
  noGuestAgent?: string | null;
  /** The scratch directory being made: awaited before the domain is paused or frozen. */
  scratchDirReady?: Promise<void>;
  log: JobLog;
  /** Called with true while filesystems are frozen (for cleanup on signals). */
  onFrozen?: (frozen: boolean) => void;
}

/** An XML document on one log line. */
const compact = (xml: string): string => xml.replace(/>\s+</g, "><").trim();

/** Starts the job (pause, freeze, begin, thaw, resume); resolves with its TCP port, null for a unix socket. */
export async function startBackupJob(o: JobStartOptions): Promise<number | null> {
  const checkpointXml = o.checkpoint
    ? buildCheckpointXml({ name: o.checkpoint.name, parent: o.checkpoint.parent, disks: o.disks.filter((d) => d.format !== "raw").map((d) => d.target) })
    : null;
  let paused = false;
  let frozen = false;
  // Asked while the scratch directory is made (remote: an ssh round trip or three); after a
  // pause of our own the domain is paused anyway.
  const state = o.pause ? null : awaitLater(o.domain.state());
  await o.scratchDirReady;
  try {
    if (o.pause) {
      await o.domain.suspend();
      paused = true;
      o.log.info("Paused virtual machine.");
    }
    if (paused || (await state)!.state === C.VIR_DOMAIN_PAUSED) {
      o.log.info("Skipping filesystem freeze: domain is paused.");
    } else if (o.noGuestAgent) {
      o.log.warning(`Guest agent is not responding, unable to freeze filesystems: ${o.noGuestAgent}`);
    } else {
      try {
        const n = await o.domain.fsFreeze(o.freezeMountpoints ?? undefined);
        frozen = true;
        o.onFrozen?.(true);
        o.log.info(`Freezed [${n}] filesystems.`);
      } catch (e) {
        o.log.warning(`Guest agent is not responding, unable to freeze filesystems: ${(e as Error).message}`);
      }
    }
    o.log.info("Starting backup job.");
    o.log.debug(`Incremental since: [${o.incremental ?? "none: full"}], scratch files in [${o.scratchDir}], freeze: [${o.freezeMountpoints?.join(",") ?? "all"}], pause: [${o.pause}]`);
    if (checkpointXml) o.log.debug(`Checkpoint XML: ${compact(checkpointXml)}`);
    try {
      return await beginJob(o, checkpointXml);
    } catch (e) {
      if (e instanceof NbdPortsError) throw new JobStartError(`Failed to start backup: ${e.message}`);
      if (isLibvirtError(e, C.VIR_ERR_CHECKPOINT_INCONSISTENT)) {
        throw new JobStartError(`Bitmap inconsistency detected: please cleanup checkpoints using virsh and execute new full backup: ${(e as Error).message}`);
      }
      throw new JobStartError(`Failed to start backup: [${(e as Error).message}]`);
    }
  } finally {
    if (frozen) {
      try {
        o.log.info(`Thawed [${await o.domain.fsThaw(o.freezeMountpoints ?? undefined)}] filesystems.`);
      } catch (e) {
        o.log.warning(`Unable to thaw filesystems: ${(e as Error).message}`);
      }
      o.onFrozen?.(false);
    }
    if (paused) {
      await o.domain.resume();
      o.log.info("Resumed virtual machine.");
    }
  }
}

/** `backupBegin` with the job's XML; TCP: on the first port of the range libvirt can bind (src/connect/nbd-ports.ts). */
async function beginJob(o: JobStartOptions, checkpointXml: string | null): Promise<number | null> {
  const begin = async (server: BackupServer): Promise<void> => {
    const backupXml = buildBackupXml({
      server,
      disks: o.disks.map((d) => ({ name: d.target, scratchFile: join(o.scratchDir, `backup.${randomTag()}.${d.target}`) })),
      incremental: o.incremental,
    });
    o.log.debug(`Backup job XML: ${compact(backupXml)}`);
    await o.domain.backupBegin(backupXml, checkpointXml);
  };
  const s = o.server;
  if ("transport" in s) {
    await begin(s);
    return null;
  }
  const { port } = await onFreePort(s.ports, 0, s.name, o.log, (p) => begin({ tls: s.tls, name: s.name, port: p }));
  return port;
}

/** True when a backup job runs on one of the disks (a leftover of a killed run, or another tool). Asked all at once. */
export async function runningBackupJob(domain: Domain, disks: SelectedDisk[]): Promise<boolean> {
  const blockJobs = disks.map((d) => domain.blockJobInfo(d.target).catch(() => null));
  // libvirt may not report pull-mode backups as block jobs; the domain job tells for sure.
  const domainJob = domain.jobInfo().catch(() => null);
  if ((await Promise.all(blockJobs)).some((job) => job?.type === C.VIR_DOMAIN_BLOCK_JOB_TYPE_BACKUP)) return true;
  const info = await domainJob;
  return !!info && info.type !== C.VIR_DOMAIN_JOB_NONE;
}

/** How long a stopped job's teardown is waited for before the run goes on anyway. */
const JOB_END_WAIT_MS = 5000;

/**
 * Aborts the domain's job and waits until libvirt reports none: its teardown (scratch files
 * removed, their labels restored in a forked child) is over before the run closes its libvirt
 * connection or starts another job. Seen twice on 2026-12-05 (libvirt 9.0): a teardown fork
 * within 2 ms of our connection closing, and libvirtd never answered for that domain again.
 */
export async function stopBackupJob(domain: Domain): Promise<void> {
  await domain.abortJob();
  const deadline = Date.now() + JOB_END_WAIT_MS;
  while (Date.now() < deadline) {
    const job = await domain.jobInfo().catch(() => null);
    if (!job || job.type === C.VIR_DOMAIN_JOB_NONE) return;
    await sleep(20);
  }
}
