/**
 * One disk's transfer (docs/behaviour.md, "Per-disk transfer"): connect to its NBD export (the libvirt job's, or
 * a qemu-nbd for offline domains), query extents, and write the stream or raw image into the
 * target (directory: `.partial` → fsync → final name → `.chksum`; zip: one entry).
 */
import { join } from "node:path";
import { humanize } from "../report/humanize.js";
import { checksumFileName, dataFileName, integrityFileName, type Level } from "../backupset/layout.js";
import { isoLocalNow, STREAM_VERSION } from "../format/metadata.js";
import { StreamWriter } from "../format/writer.js";
import { IntegrityRecorder } from "../format/integrity.js";
import type { Host } from "../host/host.js";
import {
  DEFAULT_MAX_BYTES_IN_FLIGHT,
  backupMetaContexts,
  collectBackupExtents,
  connect,
  dirtyBitmapContext,
  type ExtentList,
  type ClientTlsOptions,
  type NbdClient,
  type NbdTarget,
} from "../nbd/index.js";
import { copyExtentsToRawFile } from "../pipeline/backup-raw.js";
import { copyExtentsToStream } from "../pipeline/backup-stream.js";
import { nbdReader } from "../pipeline/nbd-endpoints.js";
import type { BlockReader } from "../pipeline/types.js";
import { QemuNbdServer } from "../qemu/nbd-server.js";
import { connectTcp, uniqueExportName } from "../qemu/nbd-tcp.js";
import { linkReadBudget, MAX_READ_BUDGET, READ_BUDGET } from "./read-budget.js";
import type { BackupTarget } from "../storage/target.js";
import { writeFileDurably } from "../storage/durable.js";
import type { BufferPool } from "../util/buffer-pool.js";
import type { RemoteNbd } from "../connect/remote.js";
import { onFreePort } from "../connect/nbd-ports.js";
import type { SelectedDisk } from "../libvirt/disk-selection.js";
import { nbdinfoExtentSource } from "./nbdinfo-extents.js";

export interface DiskLog {
  info(m: string): void;
  warning(m: string): void;
  debug(m: string): void;
}

export interface DiskBackupOptions {
  disk: SelectedDisk;
  level: Level;
  /** File name ident (checkpoint name, unix time, or "copy"). */
  ident: string;
  checkpointName: string;
  parentCheckpoint: string;
  /** Output format: stream, or raw image (-t raw, and always for raw disks). */
  raw: boolean;
  compressLevel: number | null;
  sparseDetection: boolean;
  useNbdinfo: boolean;
  target: BackupTarget;
  /** Online: the job's NBD server (TCP for a remote hypervisor). Offline: null (a qemu-nbd is started here). */
  online: { target: NbdTarget; dirtyContext: string | null; tls?: ClientTlsOptions | null } | null;
  /** `tcp`: remote hypervisor, qemu-nbd on `port` there (docs/behaviour.md, "Offline backup"), reached at `connectHost`. */
  offline: { host: Host; socket: string; bitmap: string | null; tcp?: RemoteNbd | null } | null;
  pool: BufferPool;
  log: DiskLog;
  /** The data file's name (in the target directory or the zip archive) and the bytes to copy, once known. */
  onStart?: (start: { file: string; total: number }) => void;
  onProgress?: (bytes: number) => void;
  /** Offline: the qemu-nbd started for this disk, once it runs. */
  onNbdServer?: (server: { target: NbdTarget; exportName: string; tls: boolean }) => void;
  /** Registers a way to stop this disk's helpers when the run is interrupted. */
  onCleanup?: (fn: () => void) => void;
  /** Remote offline: the port its qemu-nbd got. */
  onNbdPort?: (port: number) => void;
}

export interface DiskBackupResult {
  file: string;
  dataBytes: number;
  /** The Adler-32 written into the file's `.chksum`; null where there is none (raw image, zip archive). */
  checksum: number | null;
}

/**
 * Largest single read. Local (unix socket): 4 MiB, two in flight. Over TCP: 1 MiB, so that
 * the reads in flight a link needs (read-budget.ts) are spread over more, smaller reads: a
 * buffer goes back into play as soon as its own MiB arrived, not after four. Through the
 * bench's 20 ms link (2 connections, 24 MiB in flight) the 2 GiB data phase took 2.45 s
 * instead of 2.74 s, on loopback 1.92 instead of 2.00 s (2026-12-05; four connections with
 * 1 MiB reads: 2.87 s).
 */
const READ_SIZE = 4 << 20;
const TCP_READ_SIZE = 1 << 20;
const readSizeFor = (source: DiskSource): number => (source.target.kind === "tcp" ? TCP_READ_SIZE : READ_SIZE);
/**
 * Connections to the job's export over TCP (remote; the budget of reads in flight is shared):
 * through a 20 ms link (bench/remote-delay.ts) one connection moved ~700 MiB/s whatever was
 * in flight (24 or 48 MiB: each read then waited longer), two moved a 2 GiB data phase in
 * 2.55 s instead of 2.97 s (4 MiB reads); on loopback alike (1.73 / 1.81 s). `nbdcopy` gains
 * the same way from its four; ours did not gain from four (1 MiB reads: 2.87 against 2.45 s).
 * Only when the server offers multi-conn (qemu's does for a backup job's read-only export, and
 * takes several clients at once: the second negotiates beside the first); a unix socket keeps
 * one.
 */
const TCP_CONNECTIONS = 2;

export async function backupDisk(o: DiskBackupOptions): Promise<DiskBackupResult> {
  const { disk, log } = o;
  if (disk.discard) log.info(`Disk [${disk.target}] has discard option: [${disk.discard}]`);
  const opened = await openSource(o);
  const source = opened.source;
  let client: NbdClient | null = opened.client;
  try {
    sizeReadBudget(o, source, client);
    const extents = await queryExtents(o, client, source);
    const name = dataFileName(disk.target, disk.raw ? "copy" : o.level, o.ident);
    o.onStart?.({ file: name, total: extents.dataBytes });
    const reader = nbdReader(client);
    const started = performance.now();
    let checksum: number | null = null;
    const readSize = readSizeFor(source);
    if (o.raw) await writeRawImage(o, name, reader, extents, client.size, readSize);
    else checksum = await writeStream(o, name, reader, extents, client, readSize);
    const seconds = (performance.now() - started) / 1000;
    log.debug(`Transferred ${humanize(extents.dataBytes)} in ${seconds.toFixed(2)} s (${humanize(extents.dataBytes / Math.max(seconds, 1e-3))}/s)`);
    await client.disconnect();
    client = null;
    if (source.server) await source.server.stop();
    source.server = null;
    return { file: name, dataBytes: extents.dataBytes, checksum };
  } finally {
    client?.close();
    if (source.server) {
      source.server.kill();
      await source.server.stop().catch(() => undefined);
    }
    if (source.port !== null) o.offline?.tcp?.ports.release(source.port);
  }
}

/** The disk's reads in flight: over TCP as many as its link's round trip needs (read-budget.ts). */
function sizeReadBudget(o: DiskBackupOptions, source: DiskSource, client: NbdClient): void {
  if (source.target.kind !== "tcp") return o.pool.setBudget(READ_BUDGET);
  const rtt = client.roundTripMs;
  const budget = linkReadBudget(rtt);
  o.pool.setBudget(budget);
  o.log.debug(`NBD round trip to [${client.uri}]: [${rtt === null ? "unknown" : `${rtt.toFixed(1)} ms`}], reads in flight up to [${humanize(budget)}]`);
}

/** Where a disk's data comes from: the job's export, or a qemu-nbd started for it (offline). */
interface DiskSource {
  target: NbdTarget;
  exportName: string;
  dirtyContext: string | null;
  tls: ClientTlsOptions | null;
  server: QemuNbdServer | null;
  /** Remote offline: the TCP port of `server`, released to the run's other disks when it ends. */
  port: number | null;
}

const isIncremental = (o: DiskBackupOptions): boolean => o.level === "inc" || o.level === "diff";

function onlineSource(o: DiskBackupOptions): DiskSource {
  const online = o.online!;
  return { target: online.target, exportName: o.disk.target, dirtyContext: isIncremental(o) ? online.dirtyContext : null, tls: online.tls ?? null, server: null, port: null };
}

/**
 * The disk's source and a connected client. Remote offline: qemu-nbd on the port `-P` gives this
 * disk, or the next free one of a range while the hypervisor reports the port in use.
 */
async function openSource(o: DiskBackupOptions): Promise<{ source: DiskSource; client: NbdClient }> {
  if (o.online) {
    const source = onlineSource(o);
    return { source, client: await connectSource(o, source) };
  }
  const start = async (port: number | null) => {
    const source = startOfflineSource(o, port);
    return { source, client: await connectOrStop(o, source) };
  };
  const tcp = o.offline!.tcp ?? null;
  if (!tcp) return start(null);
  const { value, port } = await onFreePort(tcp.ports, tcp.index, o.offline!.host.name, o.log, start);
  o.onNbdPort?.(port);
  return value;
}

/** Connects to the source; a qemu-nbd started for it is stopped when that fails. */
async function connectOrStop(o: DiskBackupOptions, source: DiskSource): Promise<NbdClient> {
  try {
    return await connectSource(o, source);
  } catch (e) {
    source.server?.kill();
    await source.server?.stop().catch(() => undefined);
    if (source.port !== null) o.offline?.tcp?.ports.release(source.port);
    throw e;
  }
}

/** Offline: qemu-nbd on the hypervisor (remote: on `--nbd-port + index`, a unique export name). */
function startOfflineSource(o: DiskBackupOptions, port: number | null): DiskSource {
  const { disk, log } = o;
  const off = o.offline!;
  const tcp = port !== null ? (off.tcp ?? null) : null;
  if (tcp) log.info(`Offline backup, starting remote NBD server, socket: [${off.host.name}:${off.socket}], port: [${port}]`);
  else log.info(`Offline backup, starting local NBD server, socket: [${off.socket}]`);
  const exportName = tcp ? uniqueExportName(disk.target) : disk.target;
  const incremental = isIncremental(o);
  const server = QemuNbdServer.start(off.host, {
    exportName,
    image: disk.path,
    format: disk.format,
    ...(tcp ? { port: port!, bind: tcp.bind, connectHost: tcp.connectHost, tlsDir: tcp.tlsDir } : { socket: off.socket }),
    readOnly: true,
    bitmap: incremental && off.bitmap ? off.bitmap : undefined,
  });
  o.onCleanup?.(() => server.kill("SIGKILL")); // read-only export: nothing to lose
  o.onNbdServer?.({ target: server.target, exportName, tls: !!tcp?.tls });
  const dirtyContext = incremental && off.bitmap ? dirtyBitmapContext(off.bitmap) : null;
  return { target: server.target, exportName, dirtyContext, tls: tcp?.tls ?? null, server, port };
}

/** The NBD connection; a signal mid-handshake closes the socket at once (see Cleanup.run for why). */
async function connectSource(o: DiskBackupOptions, src: DiskSource): Promise<NbdClient> {
  const { log } = o;
  const connecting = new AbortController();
  o.onCleanup?.(() => connecting.abort());
  const connectOptions = {
    signal: connecting.signal,
    exportName: src.exportName,
    metaContexts: backupMetaContexts({ dirtyContext: src.dirtyContext, sparseDetection: o.sparseDetection }),
    tls: src.tls,
    // The pool bounds the reads ahead (sized for the link once connected); the client must not cap them lower.
    maxBytesInFlight: Math.max(DEFAULT_MAX_BYTES_IN_FLIGHT, MAX_READ_BUDGET),
    log: (level: "info" | "debug", m: string) => (level === "info" ? log.info(m) : log.debug(m)),
  };
  const target = src.target;
  // Offline: fails at once with qemu-nbd's message when it cannot serve (e.g. missing bitmap).
  const client = src.server
    ? await src.server.connect(connectOptions)
    : target.kind === "tcp"
      ? await connectTcp({ ...connectOptions, target, attempts: 20, intervalMs: 1000, connections: TCP_CONNECTIONS, openTogether: true })
      : await connect({ ...connectOptions, target, attempts: 20, intervalMs: 1000 });
  o.onCleanup?.(() => client.close());
  return client;
}

/** The extents to copy (allocated, or dirty ∩ allocated), with the original's log lines. */
async function queryExtents(o: DiskBackupOptions, client: NbdClient, src: DiskSource): Promise<ExtentList> {
  const { log } = o;
  const incremental = isIncremental(o);
  const extentOptions = { dirtyContext: src.dirtyContext, sparseDetection: o.sparseDetection };
  if (incremental && !o.sparseDetection) log.info("Skipping detection of sparse/fstrimmed blocks.");
  // nbdinfo (libnbd) finds the CA and client certificate through the URI.
  const tls = src.tls;
  const infoUri = tls?.certDir ? `${client.uri}?tls-certificates=${tls.certDir.replace(/[^A-Za-z0-9_.\/~-]/g, (c) => encodeURIComponent(c))}` : client.uri;
  const source = o.useNbdinfo ? await nbdinfoExtentSource(client, infoUri, backupMetaContexts(extentOptions)) : client;
  if (o.useNbdinfo) log.info("Using qemu tools to query extents");
  log.info("Start receiving backup extents.");
  const extents: ExtentList = await collectBackupExtents(source, extentOptions);
  log.info("Finished receiving extents.");
  if (incremental && o.sparseDetection && extents.dataBytes > 0) {
    log.info(`Detected ${extents.dataBytes} bytes [${humanize(extents.dataBytes)}] non-sparse blocks for current bitmap.`);
  }
  log.info(`Got ${extents.count} extents to backup.`);
  log.info(`${client.size} bytes [${humanize(client.size)}] virtual disk size`);
  log.info(`${extents.dataBytes} bytes [${humanize(extents.dataBytes)}] of data extents to backup`);
  if (incremental && extents.dataBytes === 0) log.info("No dirty blocks found");
  logExtents(log, extents);
  return extents;
}

/** `-v`: the extents as received (the first ones; long lists are cut). */
function logExtents(log: DiskBackupOptions["log"], extents: ExtentList): void {
  const shown = Math.min(extents.count, 32);
  for (let i = 0; i < shown; i++) {
    const e = extents.get(i);
    log.debug(`Extent ${i}: offset ${e.offset} length ${e.length} ${e.data ? "data" : "zero"}${e.dirty === null ? "" : e.dirty ? " dirty" : " clean"}`);
  }
  if (extents.count > shown) log.debug(`… and ${extents.count - shown} more extents`);
}

/** Returns the Adler-32 saved into the `.chksum` file (null in a zip archive: no `.chksum` there). */
async function writeStream(o: DiskBackupOptions, name: string, reader: BlockReader, extents: ExtentList, client: NbdClient, readSize: number): Promise<number | null> {
  const { log, disk } = o;
  const incremental = o.level === "inc" || o.level === "diff";
  log.info("Creating thin provisioned stream backup image");
  const file = await o.target.createFile(name, { replace: false });
  log.info(o.target.isArchive ? "Writing data to zip archive." : `Write data to target file: [${file.location}].`);
  const chunkSize = client.maxIo > 0 ? client.maxIo : 32 << 20;
  const integrity = new IntegrityRecorder();
  const writer = new StreamWriter(file, { compressed: o.compressLevel !== null, chunkSize, integrity });
  try {
    await writer.meta({
      virtualSize: client.size,
      dataSize: extents.dataBytes,
      date: isoLocalNow(),
      diskName: disk.target,
      diskFormat: disk.format,
      checkpointName: o.checkpointName,
      compressed: o.compressLevel ?? false,
      compressionMethod: "lz4",
      parentCheckpoint: o.parentCheckpoint,
      incremental,
      streamVersion: STREAM_VERSION,
    });
    await copyExtentsToStream({
      reader,
      extents,
      writer,
      incremental,
      compressLevel: o.compressLevel,
      chunkSize,
      readSize: Math.min(readSize, chunkSize),
      pool: o.pool,
      onProgress: o.onProgress,
    });
    const summary = await writer.finish();
    await file.commit();
    // Our per-frame CRCs: next to the data file, or the entry after it in the zip.
    if (o.target.isArchive) await o.target.putFile(integrityFileName(name), await integrity.text());
    else await writeFileDurably(join(o.target.directory, integrityFileName(name)), await integrity.text(), false);
    if (!o.target.isArchive) {
      const path = join(o.target.directory, name);
      log.info(`Checksum for file: [${path}]:[${summary.adler32}]`);
      const chksum = join(o.target.directory, checksumFileName(name));
      log.info(`Saving checksum to: [${chksum}]`);
      await writeFileDurably(chksum, String(summary.adler32), false);
      return summary.adler32;
    }
    return null;
  } catch (e) {
    await file.abort();
    throw e;
  }
}

async function writeRawImage(o: DiskBackupOptions, name: string, reader: BlockReader, extents: ExtentList, size: number, readSize: number): Promise<void> {
  if (!o.target.createImage) throw new Error("Output type raw not supported to stdout.");
  o.log.info("Creating full provisioned raw backup image");
  const image = await o.target.createImage(name, size, { replace: false });
  o.log.info(`Write data to target file: [${image.location}].`);
  try {
    await copyExtentsToRawFile({ reader, extents, image, readSize, pool: o.pool, onProgress: o.onProgress });
    await image.commit();
  } catch (e) {
    await image.abort();
    throw e;
  }
}

