/**
 * A `virtnbdbackup` run, step by step as behaviour.md §1 describes, with the safe choices
 * where the original loses data (README "Differences"): a run marker before checkpoints
 * change, no file ever replaced, every failure aborting the libvirt job.
 */
import { mkdir, readdir, readFile, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { BackupArgs } from "../cli/args.js";
import { humanize } from "../cli/humanize.js";
import { logging, withThread, type Logger } from "../cli/log.js";
import { Progress, type DiskProgress } from "../cli/progress.js";
import { versionLine } from "../cli/run.js";
import { readCpt } from "../backupset/cpt.js";
import {
  backupLogFileName,
  CHECKPOINT_DIR,
  checkpointName,
  cptFileName,
  dataFileName,
  isCheckpointXmlName,
  runMarkerFileName,
  unixIdent,
  type Level,
} from "../backupset/layout.js";
import { LocalHost } from "../host/local.js";
import { SshHost } from "../host/ssh.js";
import type { Host } from "../host/host.js";
import { Connection, formatVersion, localLibVersion } from "../libvirt/connection.js";
import * as C from "../libvirt/constants.js";
import type { Domain } from "../libvirt/domain.js";
import { DomainXml } from "../libvirt/domain-xml.js";
import { dirtyBitmapContext, formatNbdUri, type ClientTlsOptions, type NbdTarget } from "../nbd/index.js";
import { DirectoryTarget } from "../storage/directory-target.js";
import type { BackupTarget } from "../storage/target.js";
import { ZipTarget } from "../storage/zip-target.js";
import { oneLine } from "../util/one-line.js";
import { BufferPool } from "../util/buffer-pool.js";
import {
  checkpointSize,
  CheckpointError,
  foreignCheckpoints,
  planCheckpoint,
  recordCheckpoint,
  redefineMissing,
  removeAllForFull,
  type CheckpointPlan,
} from "./checkpoints.js";
import { backupDisk, type RemoteNbd } from "./disk-backup.js";
import { selectDisks } from "./disk-selection.js";
import { JobStartError, runningBackupJob, startBackupJob } from "./job.js";
import { checkClientTls, clientTls, givenOptions, isRemoteUri, nbdHostFor, openSshHost, serverTlsDir, sshFailureLine, sshTargetFor } from "./remote.js";
import { clearRunMarker, readRunMarker, writeRunMarker } from "./run-marker.js";
import { saveAutostartAndOsinfo, saveBootFiles, saveQcowInfo, saveVmConfig, type SideFileContext } from "./side-files.js";
import { decideLevel, inspectTargetDir, partialFailure, TargetDirError, type GivenLevel, type TargetDirState } from "./target-dir.js";

/**
 * Memory for reads in flight, shared by all disks (the RSS budget of a run). More does not
 * go faster: with direct writes, 16 MiB used less CPU than 32 MiB (data read from the socket
 * is copied on before it leaves the CPU caches); with -z the lz4 lanes hold their own buffers.
 */
const READ_BUDGET = 16 << 20;

export interface BackupIO {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
}

/** How long signal cleanup (thaw, abort the job) may take before the process exits anyway. */
const CLEANUP_LIMIT_MS = 15_000;
/** Time qemu gets to notice our closed NBD connections before the job is aborted. */
const CLOSE_BEFORE_ABORT_MS = 500;

/** Things to undo when the run is interrupted or fails. */
class Cleanup {
  jobDomain: Domain | null = null;
  /** Set by the signal handler: the run ends with exit 1 and its marker stays. */
  interrupted = false;
  /** A job start in flight (a signal during `backupBegin`): settles true when the job runs. */
  jobStart: { domain: Domain; started: Promise<boolean> } | null = null;
  frozen: { domain: Domain; mountpoints: string[] | null } | null = null;
  private readonly hooks = new Set<() => void>();
  add(fn: () => void): void {
    this.hooks.add(fn);
  }
  async run(log: Logger): Promise<void> {
    for (const fn of this.hooks) {
      try {
        fn();
      } catch {
        /* best effort */
      }
    }
    if (this.jobStart) {
      // The job may come up after the signal: wait for the start (it thaws and resumes itself), then abort it.
      const { domain, started } = this.jobStart;
      this.jobStart = null;
      if (await started) this.jobDomain = domain;
    }
    if (this.frozen) {
      await this.frozen.domain.fsThaw(this.frozen.mountpoints ?? undefined).catch(() => undefined);
      this.frozen = null;
    }
    if (this.jobDomain) {
      // Let qemu see our NBD connections close before the job goes (the order of a normal end):
      // qemu 7.2 hangs for good in nbd-server-stop (libvirt stops the server when the job ends)
      // while a client connection is still in its handshake, and the domain with it.
      if (this.hooks.size > 0) await new Promise((r) => setTimeout(r, CLOSE_BEFORE_ABORT_MS));
      log.info("Cleanup: Stopping backup job.");
      await this.jobDomain.abortJob().catch((e: Error) => log.error(`Unable to stop backup job: ${e.message}`));
      this.jobDomain = null;
    }
  }
}

function fail(log: Logger, ...lines: string[]): number {
  for (const l of lines) log.error(l);
  return 1;
}

export async function runBackup(args: BackupArgs, argv: string[], io: BackupIO): Promise<number> {
  const stdoutMode = args.output === "-";
  const noprogress = args.noprogress || args.quiet;
  const outDir = stdoutMode ? process.cwd() : resolve(args.output);
  const log = logging.getLogger({ logger: "root", module: "virtnbdbackup", func: "main" });
  const earlyLogging = () => logging.configure({ prog: "virtnbdbackup", verbose: args.verbose, quiet: args.quiet, nocolor: args.nocolor });

  // 1–3: output directory and logging.
  if (!stdoutMode) {
    try {
      const s = await stat(outDir).catch(() => null);
      if (s && !s.isDirectory()) throw new Error("Specified target is a file, not a directory");
      await mkdir(outDir, { recursive: true });
    } catch (e) {
      earlyLogging();
      return fail(log, `Can't open output file: [${(e as Error).message}]`);
    }
  } else if (io.stdout.isTTY) {
    earlyLogging();
    return fail(log, "Refusing to write a zip archive to a terminal: redirect stdout to a file or a pipe.");
  }
  const logFile = join(outDir, backupLogFileName(args.level));
  logging.configure({ prog: "virtnbdbackup", verbose: args.verbose, quiet: args.quiet, nocolor: args.nocolor, syslog: args.syslog, logFile });
  log.info(versionLine(argv));
  log.info(`Backup level: [${args.level}]`);
  const compressLevel = args.compress === false ? null : args.compress;
  if (compressLevel !== null) log.info(`Compression enabled, level [${compressLevel}]`);

  // 4: option combinations.
  if (compressLevel !== null && args.type === "raw") return fail(log, "Compression not supported with raw output.");
  if (stdoutMode && args.type === "raw") return fail(log, "Output type raw not supported to stdout.");
  if (stdoutMode && args.raw) return fail(log, "Saving raw images to stdout is not supported.");
  if (args.type === "raw" && (args.level === "inc" || args.level === "diff")) {
    return fail(log, "Stream format raw does not support incremental or differential backup.");
  }

  // 5–6: leftovers of failed runs; checkpoint directory.
  const dirState = await inspectTargetDir(outDir);
  // The original's refusal first (scripts look for its message; the run marker is a `*.partial`
  // too), then ours, which also covers `auto` and stdout mode.
  if ((args.level === "inc" || args.level === "diff") && !stdoutMode) {
    const partial = partialFailure(dirState, outDir);
    if (partial) {
      await reportLeftoverJob(args, outDir, log);
      return fail(log, ...partial.lines);
    }
  }
  const marker = await readRunMarker(outDir, args.domain);
  // `auto` into a set without data files becomes a full, which starts the set over.
  const continuesSet = args.level === "inc" || args.level === "diff" || (args.level === "auto" && !dirState.empty);
  if (marker && continuesSet && !args.killonly) {
    await reportLeftoverJob(args, outDir, log);
    return fail(
      log,
      `Unfinished backup run found in target directory: [${outDir}] (${runMarkerFileName(args.domain)}: level ${marker.level}, checkpoint ${marker.checkpoint}, started ${marker.started}, pid ${marker.pid}).`,
      "Its checkpoint may have no saved data: an incremental backup now would miss changes. Execute a full backup into a new directory.",
    );
  }
  const checkpointDir = args.checkpointdir ? resolve(args.checkpointdir) : join(outDir, CHECKPOINT_DIR);
  await mkdir(checkpointDir, { recursive: true });
  const cptPath = join(outDir, cptFileName(args.domain));

  // 7: libvirt.
  log.info(`Libvirt library version: [${formatVersion(localLibVersion())}]`);
  let conn: Connection;
  try {
    conn = await Connection.open(args.uri, args.user && args.password ? { user: args.user, password: args.password } : {});
  } catch (e) {
    const extra = (e as { code?: number }).code === C.VIR_ERR_AUTH_FAILED ? ["--user and --password options for SASL authentication are required."] : [];
    return fail(log, `Can't connect libvirt daemon: [${(e as Error).message}]`, ...extra);
  }
  // Remote hypervisor (qemu+ssh): its files and qemu tools over one ssh connection, data over NBD/TCP.
  let host: Host = new LocalHost();
  let nbdHost: string | null = null;
  if (isRemoteUri(args.uri)) {
    const tlsProblem = checkClientTls(args);
    if (tlsProblem) {
      await conn.close().catch(() => undefined);
      return fail(log, tlsProblem);
    }
    try {
      host = await openSshHost(sshTargetFor(args, givenOptions("virtnbdbackup", argv)), log);
    } catch (e) {
      await conn.close().catch(() => undefined);
      return fail(log, sshFailureLine("backup", e));
    }
    nbdHost = await nbdHostFor(args, conn, host.name);
  }
  const cleanup = new Cleanup();
  if (host instanceof SshHost) {
    // Interrupted: remote qemu-nbd and the ssh master end when their stdin closes.
    const ssh = host;
    cleanup.add(() => ssh.abandon());
  }
  const stopSignals = installSignalHandlers(cleanup, log, stdoutMode ? io.stdout : null);
  try {
    return await runConnected({ args, argv, io, log, conn, host, nbdHost, cleanup, stdoutMode, noprogress, outDir, checkpointDir, cptPath, compressLevel, dirState });
  } catch (e) {
    await cleanup.run(log);
    if (e instanceof CheckpointError || e instanceof JobStartError || e instanceof TargetDirError) return fail(log, e.message);
    throw e;
  } finally {
    stopSignals();
    await host.close().catch(() => undefined);
    await conn.close().catch(() => undefined);
  }
}

interface RunContext {
  args: BackupArgs;
  argv: string[];
  io: BackupIO;
  log: Logger;
  conn: Connection;
  host: Host;
  /** Remote mode: where the NBD traffic goes (`--nbd-ip` or the remote host name); null: local. */
  nbdHost: string | null;
  cleanup: Cleanup;
  stdoutMode: boolean;
  noprogress: boolean;
  outDir: string;
  checkpointDir: string;
  cptPath: string;
  compressLevel: number | null;
  dirState: TargetDirState;
}

async function runConnected(r: RunContext): Promise<number> {
  const { args, log, conn } = r;
  let domain: Domain;
  try {
    domain = await conn.lookupDomain(args.domain);
  } catch (e) {
    return fail(log, `Unable to find domain [${args.domain}]: ${(e as Error).message}`);
  }

  // 8: guest info (for osinfo).
  let osinfo: Record<string, unknown> | null = null;
  try {
    osinfo = await domain.guestInfo();
    log.info(`Domain info: OS: [${osinfo["os.pretty-name"] ?? osinfo["os.name"] ?? ""}] Arch: [${osinfo["os.machine"] ?? ""}] Hostname: [${osinfo["hostname"] ?? ""}]`);
  } catch (e) {
    log.debug(`No guest agent information: ${(e as Error).message}`);
  }

  // 9: feature check for old libvirt.
  let xml = await domain.xmlDesc(0);
  let domXml = DomainXml.parse(xml);
  if ((await conn.libVersion()) < C.LIBVIRT_VERSION_INCREMENTAL_BACKUP_DEFAULT && !domXml.hasQemuCapability("incremental-backup")) {
    return fail(log, "Virtual machine does not support required backup features, please adjust virtual machine configuration.");
  }

  // 10: foreign checkpoints.
  if (args.level === "full" || args.level === "inc" || args.level === "diff") {
    const foreign = await foreignCheckpoints(domain);
    if (foreign.length > 0) {
      log.critical(`Foreign checkpoint found: [${foreign[0]}]`);
      log.critical("Checkpoints not created by this tool would break the bitmap chain.");
      log.critical("Remove them with [virsh checkpoint-delete] or back up into a new directory.");
      return 1;
    }
  }

  // 11: online/offline, -S.
  let offline = !(await domain.isActive());
  let startedPaused = false;
  if (offline && args.startDomain) {
    log.info("Starting domain in paused state");
    await domain.create(C.VIR_DOMAIN_START_PAUSED | C.VIR_DOMAIN_START_AUTODESTROY);
    offline = false;
    startedPaused = true;
    xml = await domain.xmlDesc(0);
    domXml = DomainXml.parse(xml);
  }
  let given: GivenLevel = args.level;
  if (offline && given === "full") {
    log.warning("Domain is offline, resetting backup options.");
    log.warning("New Backup level: [copy].");
    given = "copy";
  }
  if (offline && args.startonly) return fail(log, "Domain is offline: must be active for this function.");

  // 12: target directory / auto.
  const decision = decideLevel(given, r.dirState, r.outDir, r.stdoutMode || args.startonly || args.killonly);
  if (decision.message) log.info(decision.message);
  let level: Level = decision.level;

  // 13–15: disks.
  const exclude = args.exclude ? args.exclude.split(",") : [];
  let disks = await selectDisks(
    domXml,
    {
      include: args.include,
      exclude,
      raw: args.raw,
      resolveVolume: async (pool, volume) => (await (await conn.storagePoolByName(pool)).volumeByName(volume)).path(),
    },
    log,
  );
  if (args.raw && (level === "inc" || level === "diff") && disks.some((d) => d.raw)) {
    log.warning("Raw disks can't be included during incremental or differential backup.");
    log.warning("Excluding raw disks.");
    disks = disks.filter((d) => !d.raw);
  }
  for (const tpm of domXml.tpms()) {
    if (tpm.backendType === "emulator") {
      log.warning("Emulated TPM device attached: its state is not part of the backup.");
      log.warning("Copy /var/lib/libvirt/swtpm/<uuid>/ manually if you need it.");
    }
  }
  if (level !== "copy" && disks.length > 0 && !disks.some((d) => d.format.startsWith("qcow"))) {
    log.info("Only raw disks attached, switching to backup mode copy.");
    level = "copy";
  }
  const cpt = await readCpt(r.cptPath);
  const sideCtx = (ident: string, archive: BackupTarget | null): SideFileContext => ({ dir: r.outDir, archive, host: r.host, level, ident, log });

  // 16: nothing to back up.
  if (disks.length === 0) {
    const ctx = sideCtx(level === "copy" ? "copy" : unixIdent(), null);
    await saveVmConfig(ctx, xml);
    await saveBootFiles(ctx, domXml.osPaths());
    return fail(log, "Unable to detect disks suitable for backup.");
  }

  // 17: a running job.
  if (!args.killonly && !offline && (await runningBackupJob(domain, disks))) {
    return fail(log, `Active block job for running domain: Check with [virsh domjobinfo ${args.domain}] or use option -k to kill the active job.`, leftoverJobHint(args, r.outDir));
  }
  log.info(`Backup will save [${disks.length}] attached disks.`);
  const workers = r.stdoutMode ? 1 : Math.max(1, Math.min(args.worker ?? disks.length, disks.length));
  log.info(`Concurrent backup processes: [${workers}]`);

  // 19: -k.
  if (args.killonly) {
    log.info("Stopping backup job");
    try {
      await domain.abortJob();
      return 0;
    } catch (e) {
      return fail(log, `Unable to stop backup job: ${(e as Error).message}`);
    }
  }

  // An inc/diff whose last checkpoint has no saved data (a run that died early) would miss changes.
  if ((level === "inc" || level === "diff") && !r.stdoutMode && cpt.length > 0) {
    const last = cpt.at(-1)!;
    for (const d of disks.filter((x) => !x.raw)) {
      const expected = last === checkpointName(0) ? dataFileName(d.target, "full", last) : dataFileName(d.target, "inc", last);
      if (!(await fileExists(join(r.outDir, expected)))) {
        return fail(
          log,
          `Checkpoint [${last}] is listed in [${r.cptPath}] but its data file [${expected}] is missing: the run that created it did not finish.`,
          "An incremental backup now would miss the changes made before that checkpoint. Execute a full backup.",
        );
      }
    }
  }

  // Mark the run unfinished before any checkpoint or file of the set changes (stdout mode: only
  // checkpoints change in the working directory; the data goes into the archive).
  const writesMarker = !r.stdoutMode || (!offline && (level === "full" || level === "inc"));
  if (writesMarker) {
    try {
      await writeRunMarker(r.outDir, args.domain, { pid: process.pid, level, checkpoint: "?", started: new Date().toISOString() });
    } catch (e) {
      return fail(log, `Unable to write the run marker [${join(r.outDir, runMarkerFileName(args.domain))}]: ${oneLine((e as Error).message)}`);
    }
  }
  // Set once checkpoints or files of the set may have changed: a failure after that keeps the marker.
  let checkpointsChanged = false;
  let keepMarker = false;
  try {
    // 20: checkpoints.
    log.info("Checkpoint handling.");
    if (!offline) await redefineMissing(domain, r.checkpointDir, log);
    if (level === "full" && !offline) {
      checkpointsChanged = true;
      await removeAllForFull(domain, r.cptPath, r.checkpointDir, log);
    }
    const plan: CheckpointPlan = await planCheckpoint(level, level === "full" ? [] : cpt, offline, offline ? null : domain, log);
    // An inc that fell back to full writes a full stream under the inc file name (as the original).
    const fileLevel: Level = plan.fellBack ? "inc" : level;
    if (plan.fellBack) level = "full";
    if ((level === "full" || level === "inc") && !offline) log.info(`Using checkpoint name: [${plan.name}].`);
    const ident = level === "copy" ? "copy" : level === "diff" ? unixIdent() : offline ? `${plan.name}.${unixIdent()}` : plan.name;

    // 21: -p / -T.
    if ((args.printonly || args.threshold !== null) && (level === "inc" || level === "diff") && !offline && plan.parent) {
      const size = await checkpointSize(domain, plan.parent);
      if (args.printonly) {
        log.info(`Estimated checkpoint backup size: [${size}] Bytes`);
        return 0;
      }
      if (args.threshold !== null && size < args.threshold) {
        log.info(`Backup size [${size}] does not meet required threshold [${args.threshold}], skipping backup.`);
        return 0;
      }
    }

    // 22–25: the job.
    const socket = args.socketfile;
    if (!offline) {
      if (r.nbdHost !== null) {
        log.info(`Remote NBD Endpoint host: [${r.nbdHost}:${args.nbdPort}]`);
        for (const d of disks) log.info(`${d.target}: [${formatNbdUri({ kind: "tcp", host: r.nbdHost, port: args.nbdPort }, d.target, args.tls)}]`);
      } else {
        log.info("Local NBD Endpoint sockets:");
        for (const d of disks) log.info(`${d.target}: [nbd+unix:///${d.target}?socket=${socket}]`);
      }
      // On the hypervisor host (remote: over ssh).
      await r.host.mkdir(args.scratchdir);
      log.info(`Temporary scratch file target directory: [${args.scratchdir}]`);
      const createsCheckpoint = level === "full" || level === "inc";
      const mountpoints = args.freezeMountpoint ? args.freezeMountpoint.split(",") : null;
      const starting = startBackupJob({
        domain,
        disks,
        server: r.nbdHost !== null ? { tls: args.tls, name: r.nbdHost, port: args.nbdPort } : { transport: "unix", socket },
        scratchDir: args.scratchdir,
        incremental: level === "inc" || level === "diff" ? plan.parent : null,
        checkpoint: createsCheckpoint ? { name: plan.name, parent: plan.parent } : null,
        pause: args.pause && !startedPaused,
        freezeMountpoints: mountpoints,
        log,
        onFrozen: (f) => (r.cleanup.frozen = f ? { domain, mountpoints } : null),
      });
      // A signal while libvirt starts the job: the handler waits for the start, then aborts the job.
      r.cleanup.jobStart = { domain, started: starting.then(() => true, () => false) };
      await starting;
      r.cleanup.jobStart = null;
      r.cleanup.jobDomain = domain;
      if (createsCheckpoint) {
        checkpointsChanged = true;
        log.info("Started backup job with checkpoint, saving information.");
        try {
          await writeRunMarker(r.outDir, args.domain, { pid: process.pid, level, checkpoint: plan.name, started: new Date().toISOString() });
          await recordCheckpoint(domain, plan.name, r.cptPath, r.checkpointDir, log);
        } catch (e) {
          throw new CheckpointError(`Unable to save checkpoint information for [${plan.name}]: ${oneLine((e as Error).message)}`);
        }
      }
      if (args.startonly) {
        log.info("Started backup job for debugging, exiting.");
        r.cleanup.jobDomain = null;
        keepMarker = true;
        return 0;
      }
    }

    // 26: the disks.
    checkpointsChanged = true; // files of the set are written from here on
    const archive: ZipTarget | null = r.stdoutMode ? new ZipTarget(r.io.stdout, r.outDir) : null;
    const target: BackupTarget = archive ?? new DirectoryTarget(r.outDir);
    const progress = new Progress({ noprogress: r.noprogress });
    logging.setConsole(progress);
    const pool = BufferPool.budget(READ_BUDGET);
    let totalBytes = 0;
    let diskFailures = 0;
    const queue = [...disks];
    const worker = async () => {
      // After a signal no further disk starts: the job is being aborted.
      for (let disk = queue.shift(); disk && !r.cleanup.interrupted; disk = queue.shift()) {
        const d = disk;
        const dlog = log.child({ thread: d.target, module: "disktarget", func: "backup" });
        let bar: DiskProgress | null = null;
        try {
          const result = await withThread(d.target, () =>
            backupDisk({
              disk: d,
              level,
              fileLevel,
              ident,
              checkpointName: plan.name,
              parentCheckpoint: level === "inc" || level === "diff" ? plan.parent : "",
              raw: args.type === "raw" || d.raw,
              compressLevel: r.compressLevel,
              sparseDetection: !args.noSparseDetection || !(level === "inc" || level === "diff"),
              useNbdinfo: args.qemu,
              target,
              online: offline ? null : { ...onlineTarget(r, socket), dirtyContext: dirtyBitmapContext(`backup-${d.target}`) },
              offline: offline
                ? { host: r.host, socket: `${socket}.${d.target}`, bitmap: level === "inc" || level === "diff" ? plan.name : null, tcp: offlineTcp(r, disks.indexOf(d)) }
                : null,
              pool,
              log: dlog,
              onTotal: (n) => (bar = progress.bar(d.target, n)),
              onProgress: (n) => bar?.increment(n),
              onCleanup: (fn) => r.cleanup.add(fn),
            }),
          );
          totalBytes += result.dataBytes;
          if (r.noprogress) dlog.info(`Backup of disk [${d.target}] finished, file: [${join(r.outDir, result.file)}]`);
        } catch (e) {
          diskFailures++;
          dlog.error(`Disk backup failed: [${oneLine((e as Error).message)}]`);
        } finally {
          (bar as DiskProgress | null)?.done();
        }
      }
    };
    await Promise.all(Array.from({ length: workers }, worker));
    progress.stop();
    logging.setConsole(null);
    // Interrupted: the signal handler aborts the job and exits (its watchdog timer keeps the
    // process alive until then); nothing more is written to the set or the archive.
    if (r.cleanup.interrupted) await new Promise<never>(() => undefined);

    // 27: end the job.
    if (!offline) {
      log.info("Backup jobs finished, stopping backup task.");
      await domain.abortJob().catch((e: Error) => log.error(`Unable to stop backup job: ${e.message}`));
      r.cleanup.jobDomain = null;
    }

    // 28: side files (also after a failed disk, as the original).
    const ctx = sideCtx(ident, archive);
    await saveVmConfig(ctx, xml);
    if (archive && (level === "full" || level === "inc")) {
      await archive.putFile(cptFileName(args.domain), await readFile(r.cptPath, "utf8"));
      const arcDir = args.checkpointdir ? args.checkpointdir.replace(/^(\.\/|\/)+/, "").replace(/\/+$/, "") : CHECKPOINT_DIR;
      await archive.addDirectory(`${arcDir}/`);
      for (const name of (await readdir(r.checkpointDir)).filter(isCheckpointXmlName).sort()) {
        await archive.putFile(`${arcDir}/${name}`, await readFile(join(r.checkpointDir, name), "utf8"));
      }
    }
    await saveBootFiles(ctx, domXml.osPaths());
    await saveQcowInfo(ctx, disks);
    await saveAutostartAndOsinfo(ctx, await domain.autostart().catch(() => false), osinfo);

    // 29: result.
    const failed = diskFailures > 0 || logging.counts.errors > 0;
    if (failed) {
      keepMarker = checkpointsChanged;
      log.error("Error during backup");
    } else if (args.strict && logging.counts.warnings > 0) {
      log.info(`[${logging.counts.warnings}] Warnings detected during backup operation, forcing exit code 2`);
    } else {
      log.info(`Total saved disk data: [${humanize(totalBytes)}]`);
      log.info("Finished successfully");
    }
    if (archive) {
      const logPath = logging.logFile;
      if (logPath) await archive.putFile(logPath.slice(logPath.lastIndexOf("/") + 1), await readFile(logPath));
      await archive.close();
    }
    return failed ? 1 : args.strict && logging.counts.warnings > 0 ? 2 : 0;
  } catch (e) {
    keepMarker = checkpointsChanged;
    throw e;
  } finally {
    if (writesMarker && !keepMarker && !r.cleanup.interrupted) await clearRunMarker(r.outDir, args.domain).catch(() => undefined);
  }
}

/** The job's NBD server: the unix socket, or (remote) TCP on `--nbd-port` with `--tls`. */
function onlineTarget(r: RunContext, socket: string): { target: NbdTarget; tls: ClientTlsOptions | null } {
  if (r.nbdHost === null) return { target: { kind: "unix", path: socket }, tls: null };
  return { target: { kind: "tcp", host: r.nbdHost, port: r.args.nbdPort }, tls: clientTls(r.args) };
}

/** Remote offline: qemu-nbd on the hypervisor at `--nbd-port + disk index` (behaviour.md §5). */
function offlineTcp(r: RunContext, index: number): RemoteNbd | null {
  if (r.nbdHost === null) return null;
  const a = r.args;
  return { port: a.nbdPort + index, bind: a.nbdIp || undefined, connectHost: r.nbdHost, tlsDir: serverTlsDir(a), tls: clientTls(a) };
}

async function fileExists(path: string): Promise<boolean> {
  return (await stat(path).catch(() => null)) !== null;
}

/**
 * SIGINT/SIGTERM/SIGHUP/SIGPIPE, and in stdout mode the reader of stdout going away (EPIPE: Node
 * ignores SIGPIPE, the write fails): abort the job, thaw, stop helpers, keep `.partial` files and
 * the run marker, exit 1.
 */
function installSignalHandlers(cleanup: Cleanup, log: Logger, stdout: NodeJS.WritableStream | null): () => void {
  let handling = false;
  const numbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGPIPE: 13, SIGTERM: 15 };
  const abort = (line: string) => {
    if (handling) return;
    handling = true;
    cleanup.interrupted = true;
    log.error(line);
    // libvirt may not answer at all (a daemon stuck after an earlier killed client): the exit
    // must not wait for it forever.
    let watchdog: NodeJS.Timeout | undefined;
    const stuck = new Promise<void>((resolve) => {
      watchdog = setTimeout(() => {
        log.error(`Cleanup did not finish within ${CLEANUP_LIMIT_MS / 1000} s (libvirt does not answer): a backup job may still be active, check with [virsh domjobinfo <domain>].`);
        resolve();
      }, CLEANUP_LIMIT_MS);
    });
    void Promise.race([cleanup.run(log).catch(() => undefined), stuck]).finally(async () => {
      clearTimeout(watchdog);
      await logging.close().catch(() => undefined);
      process.exit(1);
    });
  };
  const handler = (signal: NodeJS.Signals) => abort(`Signal caught: ${numbers[signal] ?? signal}`);
  const outputGone = (e: NodeJS.ErrnoException) => abort(`Output stream closed: [${e.code ?? e.message}]: the reader of stdout went away, stopping backup.`);
  const signals: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP", "SIGPIPE"];
  for (const s of signals) process.on(s, handler);
  stdout?.on("error", outputGone);
  return () => {
    for (const s of signals) process.off(s, handler);
    stdout?.off("error", outputGone);
  };
}

/** The exact commands that end a backup job left behind by a killed run. */
function leftoverJobHint(args: BackupArgs, outDir: string): string {
  return (
    `A backup job is still active on domain [${args.domain}] (a killed run leaves it behind): stop it with ` +
    `[virtnbdbackup -d ${args.domain} -o ${outDir} -k] or [virsh -c ${args.uri} domjobabort ${args.domain}].`
  );
}

/** Before refusing to continue an unfinished set: name a job that its killed run left running. */
async function reportLeftoverJob(args: BackupArgs, outDir: string, log: Logger): Promise<void> {
  let conn: Connection | null = null;
  try {
    conn = await Connection.open(args.uri, args.user && args.password ? { user: args.user, password: args.password } : {});
    const domain = await conn.lookupDomain(args.domain);
    try {
      if ((await domain.jobInfo()).type !== C.VIR_DOMAIN_JOB_NONE) log.error(leftoverJobHint(args, outDir));
    } finally {
      domain.free();
    }
  } catch {
    /* best effort: the refusal follows anyway */
  } finally {
    await conn?.close().catch(() => undefined);
  }
}
