/**
 * `virtnbdrestore` restore action (docs/behaviour.md, "Restore"): every disk of the VM config (or a
 * `--sequence`), rebuilt from its chain; then boot files, the config (`-c` adjusted), and
 * optionally the domain defined in libvirt (`-D`). Any failure means exit 1.
 */
import { Readable } from "node:stream";
import { basename, isAbsolute, join, resolve } from "node:path";
import type { RestoreArgs } from "./options.js";
import type { Logger } from "../report/log.js";
import { logging } from "../report/log.js";
import { Progress } from "../report/progress.js";
import { buildChain, ChainError, checkChainAgainstCpt, checkpointXmlNames, cutChain, type ChainFile } from "../backupset/chain-order.js";
import { parseCpt } from "../backupset/cpt.js";
import { cptFileName, isAutostartFileName, isCptFileName, isDataFileName, isQcowJsonFileNameOf, parseDataFileName, qcowJsonFileName } from "../backupset/layout.js";
import { StreamReader } from "../format/reader.js";
import type { Host } from "../host/host.js";
import { LocalHost } from "../host/local.js";
import { shQuote, SshHost } from "../host/ssh.js";
import type { Connection } from "../libvirt/connection.js";
import { DomainXml } from "../libvirt/domain-xml.js";
import { qcowSettingsFromInfo, type QcowSettings } from "../qemu/img.js";
import type { BackupSetSource, SetFile } from "../storage/set-source.js";
import { selectDisks } from "../libvirt/disk-selection.js";
import type { RemoteNbd } from "../connect/remote.js";
import { NbdPortPool } from "../connect/nbd-ports.js";
import { clientTls, isRemoteUri, serverTlsDir } from "../connect/remote.js";
import { dropSshLogin, openHypervisor, openLibvirt, SessionError, startSshLogin, type Hypervisor } from "../connect/session.js";
import { adjustCommonDisks, adjustIdentity, adjustRestoredDisk, chooseVmConfig, restoredName } from "./config.js";
import { checkDefineName, checkRequestedDisk } from "./preflight.js";
import { prepareOutputDir, removeIfUnused, type OutputDir } from "./target-dir.js";
import { restoreBootFiles } from "./boot-files.js";
import { restoreTpmState } from "./tpm-state.js";
import { restoreDiskChain, RestoreError, type DiskRestoreJob } from "./disk.js";
import { partialPath, writeFileDurably } from "../storage/durable.js";
import { copySparse } from "./sparse-copy.js";
import { readExactly, type RandomAccessSource } from "../format/source.js";
import { oneLine } from "../util/one-line.js";
import { exitCodeFromCounts } from "../report/exit-code.js";
import { eventsOnStderr, runEvents } from "../report/events.js";
import { describeLockOwner, DomainLock, lockDirectory } from "../connect/domain-lock.js";
import { onSignals } from "../connect/signals.js";
import { EXIT_TEMPFAIL } from "../report/exit-code.js";
import { LiveRestoreError, prepareLiveDisk, runLiveCopy, type LiveDisk } from "./live-restore.js";
import { liveSocketPath } from "./live-server.js";

type Out = { write(s: string): unknown };

/** The metadata of each data file, for chain ordering. */
async function readChainFiles(set: BackupSetSource, files: SetFile[]): Promise<ChainFile[]> {
  const out: ChainFile[] = [];
  for (const f of files) {
    const source = await set.open(f.name);
    try {
      const reader = await StreamReader.open(source, { trailer: false });
      out.push({ name: f.name, meta: reader.meta, mtimeMs: f.mtimeMs });
    } finally {
      await source.close();
    }
  }
  return out;
}

/** One disk's data files at the top level of the set. */
export function dataFilesOf(listing: SetFile[], disk: string): SetFile[] {
  return listing.filter((f) => !f.name.includes("/") && f.name.startsWith(`${disk}.`) && isDataFileName(f.name));
}

/** The names in the set's `.cpt` (`name`, or with null the one `*.cpt` at the top level); [] without one. */
export async function cptNamesOf(set: BackupSetSource, listing: SetFile[], name: string | null): Promise<string[]> {
  const cpt = listing.find((f) => (name === null ? !f.name.includes("/") && isCptFileName(f.name) : f.name === name));
  return cpt ? parseCpt((await set.readFile(cpt.name)).toString("utf8"), cpt.name) : [];
}

/** One disk's chain in apply order, up to `until`, cross-checked with the `.cpt` and `checkpoints/`. */
export async function diskChain(set: BackupSetSource, listing: SetFile[], disk: string, dataFiles: SetFile[], cptNames: string[], until: string | null): Promise<ChainFile[]> {
  const upTo = until ?? undefined;
  const chain = cutChain(disk, buildChain(disk, await readChainFiles(set, dataFiles), upTo), upTo);
  checkChainAgainstCpt(disk, chain, cptNames, upTo, checkpointXmlNames(listing));
  return chain;
}

/** libvirt is needed for `-D` only; without it a local restore goes on (as the original). */
async function openLibvirtForRestore(
  args: RestoreArgs,
  define: boolean,
  log: Logger,
  open: (args: RestoreArgs) => Promise<Connection>,
): Promise<Connection | null> {
  try {
    return await open(args);
  } catch (e) {
    if (define) log.error(`Unable to connect libvirt: [${(e as Error).message}]: cannot define VM`);
    else log.warning(`Unable to connect libvirt: [${(e as Error).message}]`);
    return null;
  }
}

/** Lets libvirt see the new images when the output directory is a storage pool's target. */
async function refreshPool(libvirt: Connection, dir: string, log: Logger): Promise<void> {
  let pool;
  try {
    pool = await libvirt.storagePoolByTargetPath(dir);
  } catch {
    log.warning(`Restore path [${dir}] seems not to be an libvirt managed pool, skipping refresh.`);
    return;
  }
  try {
    await pool.refresh();
    log.info(`Refreshed contents of libvirt pool [${pool.name}]`);
  } catch (e) {
    log.warning(`Failed to refresh libvirt pool [${pool.name}]: [${(e as Error).message}]`);
  } finally {
    pool.free();
  }
}

/** What a run opens and must close (or, after a failure, clean up) whatever happens. */
interface RestoreResources {
  host: Host;
  libvirt: Connection | null;
  /** Set once the output directory is there (created or found). */
  output: OutputDir | null;
}

/** Injected by unit tests (a fake libvirt connection). */
export interface RestoreDeps {
  openLibvirt?: (args: RestoreArgs) => Promise<Connection>;
}

export async function restoreSet(args: RestoreArgs, set: BackupSetSource, sequence: string[] | undefined, log: Logger, stdout: Out, deps: RestoreDeps = {}): Promise<number> {
  if (sequence) log.info("Disabling redefine and config adjust options.");
  const listing = await set.list();
  if (!sequence && !checkRequestedDisk(args.disk, listing, log)) return 1;
  const progress = new Progress({ noprogress: args.noprogress || eventsOnStderr(args) });
  logging.setConsole(progress);
  const run: RestoreResources = { host: new LocalHost(), libvirt: null, output: null };
  let code = 1;
  try {
    code = await restoreInto(run, { args, set, listing, log, stdout, progress }, sequence, deps);
  } catch (e) {
    log.error(`Disk restore failed: [${oneLine((e as Error).message)}]`);
    code = 1;
  } finally {
    if (code !== 0) await removeIfUnused(run.host, run.output);
    progress.stop();
    logging.setConsole(null);
    await run.host.close().catch(() => undefined);
    await run.libvirt?.close();
  }
  return code;
}

/**
 * The phases: libvirt, the target host, the checks that need them (config, `-D` name), then the
 * output directory and what goes into it. Returns the exit code; throws on a failed disk.
 */
async function restoreInto(run: RestoreResources, base: Omit<RestoreContext, "host" | "remote">, sequence: string[] | undefined, deps: RestoreDeps): Promise<number> {
  const { args, set, listing, log } = base;
  // A `--sequence` restores files, not a VM: no config adjustment, no define.
  const adjust = !sequence && (args.adjustConfig || args.define);
  const define = !sequence && args.define;
  // Remote: the ssh login runs beside the libvirt login (on a slow link each waits a dozen round trips).
  const sshLogin = isRemoteUri(args.uri) && isAbsolute(args.output) ? startSshLogin(args, log) : null;
  run.libvirt = await openLibvirtForRestore(args, define || args.live, log, deps.openLibvirt ?? openLibvirt);
  if (!run.libvirt && (define || args.live)) {
    await dropSshLogin(sshLogin);
    return 1;
  }
  const target = await openRestoreTarget(args, run.libvirt, log, sshLogin);
  if (!target) return 1;
  run.host = target.host;
  const configFile = chooseVmConfig(listing, args.until);
  if (!configFile) {
    log.error("No domain config file found");
    return 1;
  }
  const ctx: RestoreContext = { ...base, host: target.host, remote: target.remote };
  const originalXml = sequence ? null : await set.readFile(configFile.name);
  const domain = originalXml ? DomainXml.parse(originalXml.toString("utf8")) : null;
  if (args.live && domain && originalXml && run.libvirt) return liveInto(run, ctx, run.libvirt, domain, originalXml);
  if (domain && define && run.libvirt && !(await checkDefineName(run.libvirt, restoredName(domain.name, args.name), log))) return 1;
  run.output = await prepareOutputDir(run.host, args.output, log);
  if (!run.output) return 1;
  if (sequence) await restoreSequence(ctx, sequence);
  else if (domain && originalXml) {
    await restoreDisks(ctx, domain, adjust);
    await restoreBootFiles(domain, set, listing, run.host, log, adjust ? resolve(args.output) : null);
    await writeConfig(ctx, domain, originalXml, adjust, define);
    // In place: the original's uuid; a copy: its output directory (with -D: its new uuid, below).
    const tpmTarget = !adjust ? (domain.uuid ? { uuid: domain.uuid } : null) : define ? null : { copyDir: resolve(args.output) };
    if (tpmTarget) await restoreTpmState(domain, set, listing, run.host, log, tpmTarget);
  }
  if (run.libvirt) await refreshPool(run.libvirt, resolve(args.output), log);
  if (domain && define && run.libvirt) {
    const uuid = await defineDomain(run.libvirt, domain, listing, log);
    if (uuid) await restoreTpmState(domain, set, listing, run.host, log, { uuid });
  }
  return exitCodeFromCounts(log.tally);
}

/**
 * A live domain starts at once: a disk `-d` left out would still point at the original's image
 * (which the original may be using), so it is removed from the config, with a WARNING.
 */
function leaveOutUnrestoredDisks(domain: DomainXml, outputDir: string, log: Logger): void {
  for (const disk of domain.disks()) {
    const path = disk.sourcePath;
    if (disk.device !== "disk" || !disk.target || (path && path.startsWith(`${outputDir}/`))) continue;
    log.warning(`Disk [${disk.target}] is not restored here: it is left out of the live domain.`);
    domain.removeDisk(disk.target);
  }
}

/**
 * `--live` (live-restore.ts): the restored domain's lock, images over the served chains, boot
 * files, TPM state and config as for a restore with `-c` (and `-D`), then serve, start, copy.
 */
async function liveInto(run: RestoreResources, ctx: RestoreContext, libvirt: Connection, domain: DomainXml, originalXml: Buffer): Promise<number> {
  const { args, set, listing, log } = ctx;
  const name = restoredName(domain.name, args.name);
  const me = { pid: process.pid, started: new Date().toISOString(), output: `virtnbdrestore --live ${args.output}` };
  const lock = await DomainLock.acquire(lockDirectory(), args.uri, name, me);
  if (!(lock instanceof DomainLock)) {
    log.error(`Another run for domain [${name}] is active${describeLockOwner(lock.heldBy)}: nothing changed, try again when it has ended.`);
    return EXIT_TEMPFAIL;
  }
  const disks: LiveDisk[] = [];
  let stops = 0;
  const dispose = onSignals(() => stops++);
  try {
    run.output = await prepareOutputDir(run.host, args.output, log);
    if (!run.output) return 1;
    const socket = liveSocketPath(args.output);
    const place: PlaceDisk = async (c, disk, chain, target, settings) => {
      disks.push(await prepareLiveDisk({ host: c.host, set, socket, log }, disk, chain, target, settings));
    };
    await restoreDisks(ctx, domain, true, place);
    if (disks.length === 0) throw new LiveRestoreError("No disk to restore live: the set holds no qcow2 chain of the selected disks.");
    leaveOutUnrestoredDisks(domain, resolve(args.output), log);
    await restoreBootFiles(domain, set, listing, run.host, log, resolve(args.output));
    await writeConfig(ctx, domain, originalXml, true, args.define);
    const fresh = disks.every((d) => !d.resumed);
    if (args.define && fresh) {
      if (!(await checkDefineName(libvirt, name, log))) return 1;
      const uuid = await defineDomain(libvirt, domain, listing, log);
      if (uuid) await restoreTpmState(domain, set, listing, run.host, log, { uuid });
    } else if (fresh) await restoreTpmState(domain, set, listing, run.host, log, { copyDir: resolve(args.output) });
    return await runLiveCopy({ libvirt, finalXml: domain.toString(), disks, socket, progress: ctx.progress, bandwidth: args.liveBandwidth, log, signals: { count: () => stops } });
  } catch (e) {
    if (!(e instanceof LiveRestoreError)) throw e;
    log.error(e.message);
    return 1;
  } finally {
    dispose();
    for (const d of disks) await d.chain.close();
    await lock.release();
  }
}

/** Where the images go: this machine, or (qemu+ssh) the hypervisor with qemu-nbd on `--nbd-port` (one disk after the other; a range: a free port of it). Null: refused (logged). */
async function openRestoreTarget(args: RestoreArgs, libvirt: Connection | null, log: Logger, sshLogin: Promise<SshHost> | null): Promise<{ host: Host; remote: RemoteNbd | null } | null> {
  if (isRemoteUri(args.uri) && !isAbsolute(args.output)) {
    log.error("Absolute target path required for restore to remote system");
    return null;
  }
  let hypervisor: Hypervisor;
  try {
    hypervisor = await openHypervisor(args, libvirt, "restore", log, sshLogin);
  } catch (e) {
    if (!(e instanceof SessionError)) throw e;
    log.error(e.message);
    return null;
  }
  const { host, nbdHost } = hypervisor;
  if (nbdHost === null) return { host, remote: null };
  const ports = new NbdPortPool(args.nbdPorts);
  return { host, remote: { ports, index: 0, bind: args.nbdIp || undefined, connectHost: nbdHost, tlsDir: serverTlsDir(args), tls: clientTls(args) } };
}

/** What becomes of one disk's chain: restored into a new image (or, live, an image over the served chain). */
type PlaceDisk = (ctx: RestoreContext, disk: string, chain: ChainFile[], target: string, settings: QcowSettings | undefined) => Promise<void>;

/** Every disk of the config: its chain into a new image (or a raw copy), the config adjusted with `-c`. */
async function restoreDisks(ctx: RestoreContext, domain: DomainXml, adjust: boolean, place: PlaceDisk = restoreChain): Promise<void> {
  const { args, set, listing, log } = ctx;
  restoreVolumesAsFiles(domain, args.output, log);
  const disks = await selectDisks(domain, { include: args.disk, raw: args.raw }, log);
  if (adjust) adjustCommonDisks(domain, args.raw, log);
  const cptNames = await cptNamesOf(set, listing, cptFileName(domain.name));
  for (const disk of disks) {
    const dataFiles = dataFilesOf(listing, disk.target);
    if (dataFiles.length === 0) {
      log.warning(`No backup file for disk [${disk.target}] found, assuming it has been excluded.`);
      if (adjust) domain.removeDisk(disk.target);
      continue;
    }
    const target = join(args.output, disk.fileName);
    if (disk.raw) {
      if (!args.raw) continue;
      await copyRawImage(ctx, dataFiles, target);
      if (adjust) adjustRestoredDisk(domain, disk.target, resolve(target), null);
      continue;
    }
    const chain = await diskChain(set, listing, disk.target, dataFiles, cptNames, args.until);
    const settings = await settingsFor(ctx, disk.target, chain);
    if (settings?.dataFile && adjust) settings.dataFile = join(resolve(args.output), basename(settings.dataFile));
    await place(ctx, disk.target, chain, target, settings);
    if (disk.backingFiles.length > 0 && !adjust) {
      log.warning(`Target disk [${disk.target}] has a backing store: adjust the VM config or restore with -c.`);
    }
    if (adjust) adjustRestoredDisk(domain, disk.target, resolve(target), settings?.dataFile ?? null);
  }
  if (adjust) adjustIdentity(domain, args.name);
}

/** Storage-volume disks are restored as plain files in the output directory. */
function restoreVolumesAsFiles(domain: DomainXml, output: string, log: Logger): void {
  for (const disk of domain.disks()) {
    if (disk.type !== "volume" || !disk.source?.volume) continue;
    const path = join(output, disk.source.volume);
    log.warning(`Disk [${disk.target}] is a storage volume: restoring as file [${path}].`);
    disk.type = "file";
    disk.removeSourceAttribute("pool");
    disk.removeSourceAttribute("volume");
    disk.setSourceFile(path);
  }
}

/** The VM config next to the images (adjusted with `-c`/`-D`). */
async function writeConfig(ctx: RestoreContext, domain: DomainXml, originalXml: Buffer, adjust: boolean, define: boolean): Promise<void> {
  const { args, host, log } = ctx;
  const configOut = join(args.output, args.configFile);
  if (host.remote) await host.writeFile(configOut, adjust ? domain.toString() : originalXml);
  else await writeFileDurably(configOut, adjust ? domain.toString() : originalXml, true);
  if (!adjust) return;
  log.info(`Adjusted config placed in: [${configOut}]`);
  if (!define) log.info(`Use 'virsh -c ${args.uri} define ${configOut}' to define VM`);
}

/** `-D`: the restored VM defined in libvirt, autostart as the backed-up one had it. Returns the uuid libvirt gave it. */
async function defineDomain(libvirt: Connection, domain: DomainXml, listing: SetFile[], log: Logger): Promise<string> {
  const defined = await libvirt.defineXML(domain.toString());
  try {
    log.info(`Defined VM [${domain.name}]`);
    if (listing.some((f) => isAutostartFileName(f.name))) {
      await defined.setAutostart(true);
      log.info("Autostart enabled for restored VM.");
    }
    return DomainXml.parse(await defined.xmlDesc(0)).uuid ?? "";
  } finally {
    defined.free();
  }
}

interface RestoreContext {
  args: RestoreArgs;
  set: BackupSetSource;
  listing: SetFile[];
  host: Host;
  /** Remote hypervisor: qemu-nbd there on `--nbd-port`, our client over TCP (TLS with `--tls`). */
  remote: RemoteNbd | null;
  log: Logger;
  stdout: Out;
  progress: Progress;
}

async function settingsFor(ctx: RestoreContext, disk: string, chain: ChainFile[]): Promise<QcowSettings | undefined> {
  const lastIdent = chain.at(-1)!.meta.checkpointName;
  const candidates = ctx.listing
    .filter((f) => isQcowJsonFileNameOf(disk, f.name))
    .sort((a, b) => a.mtimeMs - b.mtimeMs);
  const chosen = candidates.find((f) => f.name === qcowJsonFileName(disk, lastIdent)) ?? candidates.at(-1);
  if (!chosen) {
    ctx.log.warning(`No QCOW image config found for disk [${disk}], image is created with default options.`);
    return undefined;
  }
  return qcowSettingsFromInfo((await ctx.set.readFile(chosen.name)).toString("utf8"));
}

/**
 * Local: qemu-img convert (reading uncompressed files itself, else from our chain server);
 * remote: NBD writes through qemu-nbd. VIRTNBD_RESTORE_ENGINE picks one for tests and benchmarks.
 */
function restoreEngine(remote: boolean): DiskRestoreJob["engine"] {
  const asked = process.env["VIRTNBD_RESTORE_ENGINE"];
  if (remote || asked === "nbd-writes") return "nbd-writes";
  return asked === "convert-nbd" ? "convert-nbd" : "convert";
}

async function restoreChain(ctx: RestoreContext, disk: string, chain: ChainFile[], target: string, settings: QcowSettings | undefined): Promise<void> {
  const total = chain.reduce((a, f) => a + f.meta.dataSize, 0);
  const bar = ctx.progress.bar(disk, total);
  const events = runEvents.disk({ disk, source: chain.map((f) => ctx.set.shownName(f.name)), target, total });
  try {
    await restoreDiskChain({
      disk,
      chain,
      target,
      set: ctx.set,
      host: ctx.host,
      socket: ctx.args.socketfile,
      tcp: ctx.remote,
      settings,
      preallocate: ctx.args.preallocate,
      compress: ctx.args.compress,
      until: ctx.args.until,
      log: ctx.log,
      stdout: ctx.stdout,
      onProgress: (n) => {
        bar.increment(n);
        events.progress(n);
      },
      engine: restoreEngine(ctx.host.remote),
    });
    events.done({ bytes: total, checksum: null });
  } finally {
    bar.done();
  }
}

async function restoreSequence(ctx: RestoreContext, sequence: string[]): Promise<void> {
  const byName = new Map(ctx.listing.map((f) => [f.name, f]));
  const files = await readChainFiles(ctx.set, sequence.map((n) => byName.get(n)!));
  const disk = files[0]!.meta.diskName;
  // The given order must be a valid chain (a prefix of the full one is fine).
  const ordered = buildChain(disk, files);
  if (ordered.some((f, i) => f.name !== files[i]!.name)) {
    throw new ChainError(`Sequence order is wrong: the chain of these files is ${ordered.map((f) => f.name).join(",")}`);
  }
  const target = join(ctx.args.output, disk);
  await restoreChain(ctx, disk, files, target, await settingsFor(ctx, disk, files));
}

async function copyRawImage(ctx: RestoreContext, dataFiles: SetFile[], target: string): Promise<void> {
  const image = dataFiles.find((f) => parseDataFileName(f.name)?.level === "copy") ?? dataFiles[0]!;
  if (await ctx.host.exists(target)) throw new RestoreError(`Target file already exists: [${target}], won't overwrite.`);
  ctx.log.info(`Copy raw image [${image.name}] to [${target}]`);
  const source = await ctx.set.open(image.name);
  const disk = parseDataFileName(image.name)?.disk ?? image.name;
  const events = runEvents.disk({ disk, source: [ctx.set.shownName(image.name)], target, total: source.size });
  try {
    if (ctx.host instanceof SshHost) await uploadSparse(ctx.host, source, target);
    else await copySparse(source, target);
    events.done({ bytes: source.size, checksum: null });
  } finally {
    await source.close();
  }
}

/** Remote raw image: streamed through ssh into `dd conv=sparse` (zero blocks stay holes), then moved into place. */
async function uploadSparse(host: SshHost, source: RandomAccessSource, target: string): Promise<void> {
  const partial = partialPath(target);
  const block = 1 << 20;
  async function* blocks(): AsyncGenerator<Buffer> {
    for (let pos = 0; pos < source.size; pos += block) {
      const buf = Buffer.allocUnsafe(Math.min(block, source.size - pos));
      await readExactly(source, buf, 0, buf.length, pos);
      yield buf;
    }
  }
  const q = shQuote(partial);
  const r = await host.runLine(`rm -f -- ${q} && dd of=${q} bs=1M conv=sparse,fsync status=none`, Readable.from(blocks()));
  if (r.exitCode !== 0) {
    await host.remove(partial).catch(() => undefined);
    throw new RestoreError(`Uploading raw image to [${host.name}:${partial}] failed: ${oneLine(r.stderr) || `exit code ${r.exitCode}`}`);
  }
  try {
    await host.moveNoReplace(partial, target);
  } catch (e) {
    await host.remove(partial).catch(() => undefined);
    throw e;
  }
}
