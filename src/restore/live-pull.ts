/**
 * The copy of a live restore (docs/behaviour.md, "Live restore"): one libvirt block pull per
 * disk. qemu reads what the target image does not hold yet from its NBD backing (our server)
 * and writes it into the image; the guest's own writes go to the image from the start. When a
 * pull completes libvirt drops the backing from the disk: from then on the disk needs nothing
 * of the backup.
 */
import type { Domain } from "../libvirt/domain.js";
import { DomainXml } from "../libvirt/domain-xml.js";
import type { DiskEvents } from "../report/events.js";
import type { DiskProgress } from "../report/progress.js";
import { oneLine } from "../util/one-line.js";

export interface PullLog {
  info(m: string): void;
  error(m: string): void;
}

export interface PulledDisk {
  disk: string;
  target: string;
  bar: DiskProgress;
  /** `progress` / `disk-done` events (`--json`) */
  events: DiskEvents;
  /** bytes of the job's progress reported so far */
  reported: number;
}

export type PullResult = { kind: "complete" } | { kind: "failed"; disks: string[] } | { kind: "stopped" };

const POLL_MS = 250;

/** True while the disk still reads from a backing image (the pull has not completed). */
async function hasBacking(domain: Domain, disk: string): Promise<boolean> {
  const d = DomainXml.parse(await domain.xmlDesc(0)).disk(disk);
  return (d?.backingStores().length ?? 0) > 0;
}

/** Starts the pulls that are not running yet (a rerun: an earlier run's pull may still be going). */
export async function startPulls(domain: Domain, disks: readonly PulledDisk[], bandwidthMiBs: number, log: PullLog): Promise<void> {
  for (const d of disks) {
    if (!(await hasBacking(domain, d.disk))) continue;
    if (await domain.blockJobInfo(d.disk)) {
      log.info(`Copy of disk [${d.disk}] into [${d.target}] is already running.`);
      continue;
    }
    await domain.blockPull(d.disk, bandwidthMiBs);
    log.info(`Copying disk [${d.disk}] into [${d.target}] while the domain runs.`);
  }
}

/**
 * Waits until every disk's pull completed (backing gone), one failed (job gone, backing still
 * there: the server or the backup went away, or qemu hit a read error), or `stopped()` says so.
 */
export async function waitForPulls(domain: Domain, disks: readonly PulledDisk[], log: PullLog, stopped: () => boolean): Promise<PullResult> {
  const open = new Map(disks.map((d) => [d.disk, d]));
  const failed: string[] = [];
  const began = performance.now();
  while (open.size > 0) {
    if (stopped()) return { kind: "stopped" };
    for (const d of [...open.values()]) {
      const job = await domain.blockJobInfo(d.disk);
      if (job) {
        if (job.end > 0) d.bar.update(Math.min(job.cur, job.end));
        if (job.cur > d.reported) d.events.progress(job.cur - d.reported);
        d.reported = Math.max(d.reported, job.cur);
        continue;
      }
      open.delete(d.disk);
      d.bar.done();
      if (await hasBacking(domain, d.disk)) {
        failed.push(d.disk);
        continue;
      }
      d.events.done({ bytes: d.reported, checksum: null });
      log.info(`Disk [${d.disk}] is complete in [${d.target}] (${((performance.now() - began) / 1000).toFixed(1)} s): it no longer reads from the backup.`);
    }
    if (failed.length > 0) return { kind: "failed", disks: failed };
    if (open.size > 0) await new Promise((r) => setTimeout(r, POLL_MS));
  }
  return { kind: "complete" };
}

/** Ends the disks' pulls (a forced stop): what they copied stays in the images. */
export async function abortPulls(domain: Domain, disks: readonly PulledDisk[], log: PullLog): Promise<void> {
  for (const d of disks) {
    try {
      if (await domain.blockJobInfo(d.disk)) await domain.blockJobAbort(d.disk);
    } catch (e) {
      log.error(`Unable to stop the copy of disk [${d.disk}]: ${oneLine((e as Error).message)}`);
    }
  }
}
