/**
 * `virtnbdrestore --live` (docs/behaviour.md, "Live restore"): the domain runs from its backup
 * within seconds and its disks move into the output directory while it runs.
 *
 * Each disk's target image is created at once as a qcow2 over a read-only NBD backing: the
 * disk's chain, served by this process (live-server.ts). The domain starts on those images, so
 * every guest write lands in the target image from the first moment; libvirt block pulls copy
 * the rest (live-pull.ts); when every pull is complete the images need nothing of the backup and
 * this process stops serving. A rerun of the same command finds the images (their backing is
 * this output directory's socket) and resumes: a running domain's pulls go on (qemu's NBD client
 * reconnects to the new server), a domain that is gone starts again on the same images.
 */
import { basename, join, resolve } from "node:path";
import { loadSetChain, type MappedChain } from "../chain/chain-loader.js";
import type { ChainFile } from "../backupset/chain-order.js";
import type { Host } from "../host/host.js";
import { qemuProcessOwner } from "../libvirt/capabilities.js";
import type { Connection } from "../libvirt/connection.js";
import { VIR_ERR_NO_DOMAIN } from "../libvirt/constants.js";
import type { Domain } from "../libvirt/domain.js";
import { DomainXml } from "../libvirt/domain-xml.js";
import { isLibvirtError } from "../libvirt/errors.js";
import { dropNbdNode, reconnectNbdBacking } from "../libvirt/nbd-backing.js";
import { oneLine } from "../util/one-line.js";
import { createOverlayImage, imageHeader, nbdBackingName, type QcowSettings } from "../qemu/img.js";
import { runEvents } from "../report/events.js";
import type { Logger } from "../report/log.js";
import type { Progress } from "../report/progress.js";
import { moveInto, partialPath } from "../storage/durable.js";
import type { BackupSetSource } from "../storage/set-source.js";
import { LiveServer } from "./live-server.js";
import { abortPulls, startPulls, waitForPulls, type PulledDisk } from "./live-pull.js";

/**
 * How long qemu would hold a guest's reads while no server answers (`<reconnect delay>`), where
 * libvirt passes it on; libvirt 9.0 drops it, so a rerun reconnects the backings itself.
 */
export const RECONNECT_DELAY_S = 60;

export class LiveRestoreError extends Error {}

/** One disk made ready: its image (new or found again) and its chain, to be served. */
export interface LiveDisk {
  disk: string;
  target: string;
  chain: MappedChain;
  resumed: boolean;
}

/**
 * The disk's image over the served chain: created (`.partial`, then moved into place, never over
 * a file) or, when an earlier `--live` run of this output directory made it, taken again.
 */
export async function prepareLiveDisk(
  o: { host: Host; set: BackupSetSource; socket: string; log: Logger },
  disk: string,
  chain: ChainFile[],
  target: string,
  settings: QcowSettings | undefined,
): Promise<LiveDisk> {
  const backing = nbdBackingName(o.socket, disk);
  let resumed = false;
  if (await o.host.exists(target)) {
    const header = await imageHeader(o.host, target);
    if (header.backing !== backing) throw new LiveRestoreError(`Target file already exists: [${target}], won't overwrite.`);
    resumed = true;
    o.log.info(`Resuming the live restore of disk [${disk}] into [${target}]: what was copied and what the guest wrote stays.`);
  }
  const mapped = await loadSetChain(o.set, chain.map((f) => f.name));
  if (!resumed) {
    try {
      const partial = partialPath(target);
      await createOverlayImage(o.host, partial, backing, { format: "qcow2", size: mapped.index.size, settings: settings && { ...settings, dataFile: undefined } });
      await moveInto(partial, target, false);
    } catch (e) {
      await mapped.close();
      throw e;
    }
    o.log.info(`Created [${target}] over the backup of disk [${disk}] ([${mapped.index.size}] bytes, [${chain.length}] file(s)).`);
  }
  return { disk, target, chain: mapped, resumed };
}

/** The XML the domain boots from: the restored config with each live disk over its NBD backing. */
export function liveDomainXml(finalXml: string, disks: readonly LiveDisk[], socket: string, uuid: string | null): string {
  const d = DomainXml.parse(finalXml);
  for (const ld of disks) d.disk(ld.disk)?.setNbdBackingStore({ socket, exportName: ld.disk, reconnectDelay: RECONNECT_DELAY_S });
  if (uuid && !d.uuid) {
    const el = d.root.ownerDocument!.createElement("uuid");
    el.appendChild(d.root.ownerDocument!.createTextNode(uuid));
    d.root.insertBefore(el, d.root.firstChild);
  }
  return d.toString();
}

async function lookupDomain(libvirt: Connection, name: string): Promise<Domain | null> {
  try {
    return await libvirt.lookupDomain(name);
  } catch (e) {
    if (isLibvirtError(e, VIR_ERR_NO_DOMAIN)) return null;
    throw e;
  }
}

/**
 * The running domain: the one an earlier run started (it runs on these images), else started
 * now with the live XML (over a domain `-D` defined: same uuid, its persistent config stays the
 * final one).
 */
export async function startLiveDomain(libvirt: Connection, finalXml: string, disks: readonly LiveDisk[], socket: string, log: Logger): Promise<{ domain: Domain; wasRunning: boolean }> {
  const name = DomainXml.parse(finalXml).name;
  const existing = await lookupDomain(libvirt, name);
  if (existing && (await existing.isActive())) {
    const running = DomainXml.parse(await existing.xmlDesc(0));
    const ours = disks.every((d) => running.disk(d.disk)?.sourcePath === resolve(d.target));
    if (!ours) throw new LiveRestoreError(`A running domain named [${name}] does not run on the images in [${basename(disks[0]?.target ?? "")}]'s directory: restore with another -N/--name`);
    log.info(`Domain [${name}] is running on the restored images: resuming the copy.`);
    return { domain: existing, wasRunning: true };
  }
  const uuid = existing ? DomainXml.parse(await existing.xmlDesc(0)).uuid : null;
  existing?.free();
  const domain = await libvirt.createXML(liveDomainXml(finalXml, disks, socket, uuid));
  log.info(`Started domain [${name}] on the restored images; their data comes from the backup until copied.`);
  return { domain, wasRunning: false };
}

export interface LiveRunOptions {
  libvirt: Connection;
  finalXml: string;
  disks: LiveDisk[];
  socket: string;
  progress: Progress;
  /** MiB/s per disk, 0: no limit */
  bandwidth: number;
  log: Logger;
  /** Resolves on the first stop signal, then on the second (see runLiveCopy). */
  signals: { count: () => number };
}

/**
 * A domain an earlier run started: its NBD backings read from that run's server, which is gone;
 * each disk still copying gets a connection to this run's server (libvirt/nbd-backing.ts).
 */
async function reconnectBackings(domain: Domain, disks: readonly PulledDisk[], socket: string, log: Logger): Promise<string[]> {
  const nodes: string[] = [];
  for (const d of disks) {
    await endOrphanedPull(domain, d.disk, log);
    const nodeName = `vnb-live-${d.disk}-${process.pid}`;
    if (await reconnectNbdBacking(domain, d.disk, { socket, exportName: d.disk, nodeName })) {
      nodes.push(nodeName);
      log.info(`Disk [${d.disk}] reads from this run's server again.`);
    }
  }
  return nodes;
}

/**
 * A pull the dead run started may not have failed yet (its reads of the gone server are still
 * on their way): it can only fail, so it is ended (what it copied stays) before the backing is
 * reconnected and a new pull starts.
 */
export async function endOrphanedPull(domain: Pick<Domain, "blockJobInfo" | "blockJobAbort">, disk: string, log: Pick<Logger, "info">): Promise<void> {
  if (!(await domain.blockJobInfo(disk))) return;
  log.info(`Ending the copy of disk [${disk}] that the earlier run started.`);
  await domain.blockJobAbort(disk).catch(() => undefined); // it may have ended by itself meanwhile
  for (let i = 0; i < 600 && (await domain.blockJobInfo(disk)); i++) await new Promise((r) => setTimeout(r, 50));
  if (await domain.blockJobInfo(disk)) throw new LiveRestoreError(`The copy of disk [${disk}] that the earlier run started does not end: retry, or end it with 'virsh blockjob --abort'.`);
}

/** The nodes reconnectBackings added, deleted once the pulls dropped the backings (a leftover only costs a little memory). */
async function dropNodes(domain: Domain, nodes: readonly string[], log: Logger): Promise<void> {
  for (const n of nodes) await dropNbdNode(domain, n).catch((e: Error) => log.debug(`Unable to delete block node [${n}]: ${oneLine(e.message)}`));
}

/** qemu's uid/gid for the socket (libvirt's DAC label of this domain type). */
async function qemuOwner(libvirt: Connection, finalXml: string): Promise<{ uid: number; gid: number } | null> {
  return qemuProcessOwner(await libvirt.capabilities(), DomainXml.parse(finalXml).type ?? "kvm");
}

/**
 * Serve, start, copy: returns the exit code. A first stop signal only warns (the guest still
 * reads from this process); a second one stops the copies (what they copied stays) and the
 * server: the guest gets read errors for blocks not yet copied until a rerun serves them again.
 */
export async function runLiveCopy(o: LiveRunOptions): Promise<number> {
  const { log } = o;
  const chains = new Map(o.disks.map((d) => [d.disk, d.chain]));
  const server = await LiveServer.start(chains, { socket: o.socket, owner: await qemuOwner(o.libvirt, o.finalXml), log: (m) => log.debug(`Live server: ${m}`) });
  log.info(`Serving the backup to qemu on [${o.socket}].`);
  let domain: Domain | null = null;
  let reconnected: string[] = [];
  try {
    const started = await startLiveDomain(o.libvirt, o.finalXml, o.disks, o.socket, log);
    domain = started.domain;
    const pulled: PulledDisk[] = o.disks.map((d) => ({
      disk: d.disk,
      target: d.target,
      bar: o.progress.bar(d.disk, d.chain.index.size),
      events: runEvents.disk({ disk: d.disk, source: d.chain.members.map((m) => m.given), target: d.target, total: d.chain.index.size }),
      reported: 0,
    }));
    if (started.wasRunning) reconnected = await reconnectBackings(domain, pulled, o.socket, log);
    await startPulls(domain, pulled, o.bandwidth, log);
    let warned = false;
    const stopped = () => {
      if (o.signals.count() === 1 && !warned) {
        warned = true;
        log.warning("The domain still reads from this process: stop again to stop serving (the guest then gets read errors for blocks not yet copied; its writes are safe in the images; the same command resumes).");
      }
      return o.signals.count() >= 2;
    };
    const result = await waitForPulls(domain, pulled, log, stopped);
    if (result.kind === "complete") {
      await dropNodes(domain, reconnected, log);
      log.info(`Live restore complete: every disk is in [${join(o.disks[0]!.target, "..")}], the backup is no longer in use.`);
      return 0;
    }
    if (result.kind === "stopped") {
      await abortPulls(domain, pulled, log);
      log.error("Live restore stopped before the copy completed: run the same command again to resume.");
      return 1;
    }
    log.error(`Copy of disk(s) [${result.disks.join(", ")}] failed (the backup or its server went away, or a read error): the guest's writes are in the images; run the same command again to resume.`);
    return 1;
  } finally {
    domain?.free();
    await server.close();
  }
}
