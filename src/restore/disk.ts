/**
 * Restores one disk: a new image (`<target>.partial`) made with the original's settings,
 * served by qemu-nbd, every file of the chain applied through our NBD client, then moved to
 * its final name. Any failure removes the partial image: no half-restored disk under a real name.
 */
import type { ChainFile } from "../backupset/chain-order.js";
import { StreamReader } from "../format/reader.js";
import type { Host } from "../host/host.js";
import type { NbdClient } from "../nbd/index.js";
import { nbdWriter } from "../pipeline/nbd-endpoints.js";
import { applyStream } from "../pipeline/restore-stream.js";
import type { BlockWriter } from "../pipeline/types.js";
import { createImage, type QcowSettings } from "../qemu/img.js";
import { QemuNbdServer } from "../qemu/nbd-server.js";
import type { RemoteNbd } from "../connect/remote.js";
import { onFreePort } from "../connect/nbd-ports.js";
import { uniqueExportName } from "../qemu/nbd-tcp.js";
import { partialPath } from "../storage/durable.js";
import type { BackupSetSource } from "../storage/set-source.js";
import { BufferPool } from "../util/buffer-pool.js";
import { humanize } from "../report/humanize.js";
import { pyPrettyDict } from "../util/python-repr.js";
import { adler32Range } from "../format/checksum.js";
import { storedChecksum } from "../backupset/stored-checksum.js";
import { convertChain } from "./convert.js";
import { runEvents } from "../report/events.js";
import { qemuNbdServerEvent } from "../qemu/nbd-server-event.js";
import { loadIntegrity } from "../backupset/integrity.js";

export class RestoreError extends Error {}

export interface RestoreLog {
  info(m: string): void;
  warning(m: string): void;
  debug(m: string): void;
}

export interface DiskRestoreJob {
  disk: string;
  chain: ChainFile[];
  /** Final image path on the host. */
  target: string;
  set: BackupSetSource;
  host: Host;
  socket: string;
  /** Remote hypervisor: qemu-nbd listens on TCP there instead of `socket`. */
  tcp?: RemoteNbd | null;
  settings?: QcowSettings;
  preallocate: boolean;
  compress: boolean;
  until: string | null;
  log: RestoreLog;
  stdout: { write(s: string): unknown };
  onProgress?: (bytes: number) => void;
  /**
   * How the image is filled: qemu-img convert (local; it reads uncompressed files itself where
   * it can, `convert-nbd`: always from our chain server), or NBD writes through qemu-nbd.
   */
  engine: "convert" | "convert-nbd" | "nbd-writes";
}

/** Compares the file's Adler-32 with its `.chksum` (runs alongside the apply). */
async function checkChecksum(set: BackupSetSource, name: string, expected: number): Promise<void> {
  const source = await set.open(name);
  try {
    const computed = await adler32Range(source, 0, source.size);
    if (computed !== expected) throw new RestoreError(`Checksum mismatch for [${name}]: stored [${expected}], computed [${computed}]: the file is damaged.`);
  } finally {
    await source.close();
  }
}

export async function restoreDiskChain(job: DiskRestoreJob): Promise<void> {
  const { host, log } = job;
  if (await host.exists(job.target)) throw new RestoreError(`Target file already exists: [${job.target}], won't overwrite.`);
  const partial = partialPath(job.target);
  if (await host.exists(partial)) {
    log.warning(`Removing leftover of an earlier failed restore: [${partial}]`);
    await host.remove(partial);
  }
  const last = job.chain.at(-1)!.meta;
  log.info(`Create virtual disk [${partial}] format: [${last.diskFormat}] size: [${last.virtualSize}]`);
  await createImage(host, partial, { format: last.diskFormat, size: last.virtualSize, preallocate: job.preallocate, settings: job.settings });

  try {
    if (job.engine !== "nbd-writes") await convertLocally(job, partial);
    else await writeThroughQemuNbd(job, partial);
    await host.moveNoReplace(partial, job.target);
  } catch (e) {
    await host.remove(partial).catch(() => undefined);
    throw e;
  }
}

/** Local restore: qemu-img convert from our chain server (restore/convert.ts). */
async function convertLocally(job: DiskRestoreJob, partial: string): Promise<void> {
  const { log, set } = job;
  for (const [i, file] of job.chain.entries()) {
    const shown = set.shownName(file.name);
    if (nothingToApply(file, i === 0)) {
      log.info(`File [${shown}] contains no dirty blocks, skipping.`);
      continue;
    }
    log.info(`Applying data from backup file [${shown}] to target file [${job.target}].`);
    const source = await set.open(file.name);
    try {
      job.stdout.write(pyPrettyDict((await StreamReader.open(source, { trailer: false })).rawMeta) + "\n");
    } finally {
      await source.close();
    }
  }
  await convertChain({
    disk: job.disk,
    chain: job.chain,
    set,
    image: partial,
    compress: job.compress,
    viaNbd: job.engine === "convert-nbd",
    onProgress: job.onProgress,
    log: (m) => log.debug(m),
  });
  for (const file of job.chain) {
    if (file.meta.dataSize > 0) log.info(`End of stream, [${humanize(file.meta.dataSize)}] of data processed`);
  }
  const last = job.chain.at(-1)!;
  if (job.until && last.meta.checkpointName === job.until) log.info(`Reached checkpoint [${job.until}], stopping`);
}

/** Remote restore (and the original's way): our NBD client writes each file through qemu-nbd. */
async function writeThroughQemuNbd(job: DiskRestoreJob, partial: string): Promise<void> {
  const { host, log } = job;
  const tcp = job.tcp ?? null;
  const opened = tcp ? (await onFreePort(tcp.ports, tcp.index, host.name, log, (port) => startQemuNbd(job, partial, port))).value : await startQemuNbd(job, partial, null);
  let server: QemuNbdServer | null = opened.server;
  let client: NbdClient | null = opened.client;
  try {
    const writer = nbdWriter(client);
    const pool = BufferPool.fixed(Math.min(client.maxIo, 4 << 20), 8);
    for (const [i, file] of job.chain.entries()) {
      await applyFile(job, file, writer, pool, i === 0);
      if (job.until && file.meta.checkpointName === job.until) {
        log.info(`Reached checkpoint [${job.until}], stopping`);
        break;
      }
    }
    await writer.flush();
    await client.disconnect();
    client = null;
    await server.stop();
    server = null;
  } catch (e) {
    client?.close();
    server?.kill();
    await server?.stop().catch(() => undefined);
    throw e;
  } finally {
    if (tcp && opened.port !== null) tcp.ports.release(opened.port);
  }
}

/** qemu-nbd on the new image (remote: on TCP `port`), and our client connected to it; the server is stopped when connecting fails. */
async function startQemuNbd(job: DiskRestoreJob, partial: string, port: number | null): Promise<{ server: QemuNbdServer; client: NbdClient; port: number | null }> {
  const { host, log } = job;
  const tcp = port !== null ? (job.tcp ?? null) : null;
  if (tcp) log.info(`Starting remote NBD server on socket: [${tcp.connectHost}:${port}]`);
  const exportName = tcp ? uniqueExportName(job.disk) : job.disk;
  const server = QemuNbdServer.start(host, {
    exportName,
    image: partial,
    format: "qcow2",
    ...(tcp ? { port: port!, bind: tcp.bind, connectHost: tcp.connectHost, tlsDir: tcp.tlsDir } : { socket: job.socket }),
    discard: true,
    compressDriver: job.compress,
  });
  try {
    const client = await server.connect({ exportName, tls: tcp?.tls ?? null, log: (level, m) => (level === "info" ? log.info(m) : log.debug(m)) });
    runEvents.nbdServer(qemuNbdServerEvent(server.target, exportName, !!tcp?.tls, job.disk));
    return { server, client, port };
  } catch (e) {
    server.kill();
    await server.stop().catch(() => undefined);
    throw e;
  }
}

/**
 * A file without data has nothing to apply when it is incremental or the first on a new image;
 * a full-style one later in the chain (an inc that fell back to full on a disk of holes) still
 * zeroes what older files wrote.
 */
function nothingToApply(file: ChainFile, fresh: boolean): boolean {
  return file.meta.dataSize === 0 && (fresh || file.meta.incremental);
}

async function applyFile(job: DiskRestoreJob, file: ChainFile, writer: BlockWriter, pool: BufferPool, fresh: boolean): Promise<void> {
  const { log, set } = job;
  const shown = set.shownName(file.name);
  if (nothingToApply(file, fresh)) {
    log.info(`File [${shown}] contains no dirty blocks, skipping.`);
    return;
  }
  const source = await set.open(file.name);
  try {
    const reader = await StreamReader.open(source);
    if (reader.compressed) log.info("Found compression trailer.");
    log.info(`Applying data from backup file [${shown}] to target file [${job.target}].`);
    job.stdout.write(pyPrettyDict(reader.rawMeta) + "\n");
    const expected = await storedChecksum(set, file.name);
    const integrity = await loadIntegrity(set, file.name, reader.compressed);
    const [result] = await Promise.all([
      applyStream({ reader, writer, pool, freshTarget: fresh, onProgress: job.onProgress, integrity }),
      expected === null ? Promise.resolve() : checkChecksum(set, file.name, expected),
    ]);
    log.info(`End of stream, [${humanize(result.dataBytes)}] of data processed`);
  } finally {
    await source.close();
  }
}
