/**
 * A `virtnbdbackup` run (docs/behaviour.md, "Backup run") as a sequence of named phases, with the safe choices where the
 * original loses data (README "Differences"): a run marker before checkpoints change, no file
 * ever replaced, every failure aborting the libvirt job. The phases: prepareOutput →
 * refuseUnfinishedSet → connect (connectAndRun) → preflight (preflight.ts) → under the run
 * marker: planCheckpoints → startJob (job-phases.ts) → backupDisks (disk-workers.ts) →
 * finishRun (finish.ts).
 */
import { isObjectPath, mkdir, shownPath, stat } from "../storage/files.js";
import { readFile as readLocalFile, rm as rmLocal } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { writeFileDurably } from "../storage/durable.js";
import { backupLogFileName, runMarkerFileName } from "../backupset/layout.js";
import { CptError, readCpt } from "../backupset/cpt.js";
import { dropSshLogin, openHypervisor, openLibvirt, SessionError, startSshLogin, type Hypervisor } from "../connect/session.js";
import { NbdPortPool } from "../connect/nbd-ports.js";
import { SshHost } from "../host/ssh.js";
import { formatVersion, localLibVersion, type Connection } from "../libvirt/connection.js";
import * as C from "../libvirt/constants.js";
import type { Domain } from "../libvirt/domain.js";
import { logging, type Logger } from "../report/log.js";
import { EXIT_TEMPFAIL } from "../report/exit-code.js";
import { eventsOnStderr } from "../report/events.js";
import { versionLine } from "../report/version.js";
import { awaitLater } from "../util/in-flight.js";
import { oneLine } from "../util/one-line.js";
import { CheckpointError } from "./checkpoints.js";
import { backupDisks } from "./disk-workers.js";
import { finishRun } from "./finish.js";
import { startQcowInfo } from "./side-files.js";
import { latestGeneration, placeIn, startNewGeneration } from "./generation.js";
import { Cleanup, interruptOnSignals } from "./interruption.js";
import { planCheckpoints, startJob } from "./job-phases.js";
import { JobStartError, runningBackupJob, stopBackupJob } from "./job.js";
import { describeLockOwner, DomainLock, lockDirectory } from "../connect/domain-lock.js";
import { optionConflict } from "./option-checks.js";
import type { BackupArgs } from "./options.js";
import { chooseDisks, domainState, leftoverJobHint, lookupDomain, refuseMissingData, reportLeftoverJob, saveConfigWithoutDisks } from "./preflight.js";
import { BackupRefusal, type BackupIO, type Preflight, type RunContext, type RunPlace, type RunStats, type SetChanges } from "./run-context.js";
import { writeRunMetrics } from "./run-metrics.js";
import { clearRunMarker, readRunMarker, writeRunMarker, type RunMarker } from "./run-marker.js";
import { healUnfinishedRun } from "./unfinished-run.js";
import { checkHealth } from "./health-check.js";
import { chainNameMismatch, chainProblem } from "./chain-continuation.js";
import { decideLevel, inspectTargetDir, partialFailure, TargetDirError, type TargetDirState } from "./target-dir.js";

export type { BackupIO } from "./run-context.js";

function fail(log: Logger, ...lines: string[]): number {
  for (const l of lines) log.error(l);
  return 1;
}

export async function runBackup(args: BackupArgs, argv: string[], io: BackupIO): Promise<number> {
  if (!args.metricsFile) return runBackupOnce(args, argv, io, { bytes: 0 });
  const started = Date.now();
  const stats: RunStats = { bytes: 0 };
  let code = 1;
  try {
    code = await runBackupOnce(args, argv, io, stats);
    return code;
  } finally {
    const run = { domain: args.domain, level: args.level, started: Math.floor(started / 1000), durationSeconds: (Date.now() - started) / 1000, bytes: stats.bytes, exitCode: code };
    await writeRunMetrics(args.metricsFile, run).catch((e: Error) => {
      logging.getLogger({ logger: "root", module: "virtnbdbackup", func: "main" }).error(`Unable to write the metrics file [${args.metricsFile}]: ${oneLine(e.message)}`);
    });
  }
}

async function runBackupOnce(args: BackupArgs, argv: string[], io: BackupIO, stats: RunStats): Promise<number> {
  const log = logging.getLogger({ logger: "root", module: "virtnbdbackup", func: "main" });
  const loggingOptions = { prog: "virtnbdbackup", verbose: args.verbose, quiet: args.quiet, nocolor: args.nocolor };
  let place: RunPlace;
  try {
    place = await prepareOutput(args, io);
  } catch (e) {
    logging.configure(loggingOptions);
    return fail(log, (e as Error).message);
  }
  // One run per domain: a refused run changes nothing, not even a log file in the target.
  // `-k` stops a job whoever started it; `--check` only reads.
  let lock: DomainLock | { refusal: string } | null;
  try {
    lock = args.killonly || args.check ? null : await takeDomainLock(args, place.outDir);
  } catch (e) {
    logging.configure({ ...loggingOptions, syslog: args.syslog });
    return fail(log, `Unable to take the backup lock of domain [${args.domain}] in [${lockDirectory()}]: ${oneLine((e as Error).message)}`);
  }
  if (lock !== null && !(lock instanceof DomainLock)) {
    logging.configure({ ...loggingOptions, syslog: args.syslog });
    log.error(lock.refusal);
    return EXIT_TEMPFAIL;
  }
  // An object-storage set gets its log once the run is over: written locally until then.
  const logName = backupLogFileName(args.level);
  const staged = isObjectPath(place.outDir) && !args.check ? join(tmpdir(), `virtnbdbackup.${process.pid}.${logName}`) : null;
  try {
    const logFile = args.check ? undefined : (staged ?? join(place.outDir, logName));
    logging.configure({ ...loggingOptions, syslog: args.syslog, logFile });
    return await lockedRun(args, argv, io, log, place, stats);
  } finally {
    if (staged) await uploadStagedLog(staged, join(place.outDir, logName), log);
    await lock?.release();
  }
}

/** The run's log into the object-storage set (a failure to is logged, not fatal: the data is there). */
async function uploadStagedLog(staged: string, to: string, log: Logger): Promise<void> {
  try {
    await writeFileDurably(to, await readLocalFile(staged), true);
  } catch (e) {
    log.warning(`Unable to save the run's log as [${shownPath(to)}]: ${oneLine((e as Error).message)}`);
  } finally {
    await rmLocal(staged, { force: true }).catch(() => undefined);
  }
}

async function takeDomainLock(args: BackupArgs, outDir: string): Promise<DomainLock | { refusal: string }> {
  const me = { pid: process.pid, started: new Date().toISOString(), output: outDir };
  const got = await DomainLock.acquire(lockDirectory(), args.uri, args.domain, me);
  if (got instanceof DomainLock) return got;
  return { refusal: `Another backup of domain [${args.domain}] is running${describeLockOwner(got.heldBy)}: nothing changed, try again when it has ended.` };
}

async function lockedRun(args: BackupArgs, argv: string[], io: BackupIO, log: Logger, place: RunPlace, stats: RunStats): Promise<number> {
  log.info(versionLine(argv));
  log.info(`Backup level: [${args.level}]`);
  const compressLevel = args.compress === false ? null : args.compress;
  if (compressLevel !== null) log.info(`Compression enabled, level [${compressLevel}]`);
  const conflict = optionConflict(args);
  if (conflict) return fail(log, conflict);
  let found: { dirState: TargetDirState; deadRun: RunMarker | null };
  try {
    found = args.check ? { dirState: await inspectTargetDir(place.outDir), deadRun: null } : await refuseUnfinishedSet(args, place.outDir, place.stdoutMode, log);
  } catch (e) {
    if (e instanceof BackupRefusal) return fail(log, ...e.lines);
    throw e;
  }
  if (!args.check) await mkdir(place.checkpointDir, { recursive: true });
  return connectAndRun(args, io, log, { ...place, ...found, compressLevel, stats });
}

/**
 * The output directory (created), or stdout (refused on a terminal). An inc/diff/auto writes
 * into the target's latest generation (src/backup/generation.ts). Throws the error line.
 */
async function prepareOutput(args: BackupArgs, io: BackupIO): Promise<RunPlace> {
  const stdoutMode = args.output === "-";
  const target = stdoutMode ? process.cwd() : isObjectPath(args.output) ? shownPath(args.output) : resolve(args.output);
  if (isObjectPath(target)) {
    await checkBucket(target, args.check);
  } else if (!stdoutMode) {
    try {
      const s = await stat(target).catch(() => null);
      if (s && !s.isDirectory()) throw new Error("Specified target is a file, not a directory");
      if (!s && args.check) throw new Error(`Target directory [${target}] does not exist`);
      await mkdir(target, { recursive: true });
    } catch (e) {
      throw new Error(`Can't open output file: [${(e as Error).message}]`);
    }
  } else if (io.stdout.isTTY) {
    throw new Error("Refusing to write a zip archive to a terminal: redirect stdout to a file or a pipe.");
  }
  const continues = !stdoutMode && (args.level === "inc" || args.level === "diff" || args.level === "auto" || args.check);
  const generation = continues ? await latestGeneration(target) : { dir: target, number: 1 };
  return placeIn(args, stdoutMode, target, generation);
}

/** An `s3://` target: its bucket answers, and the prefix is no object (`--check`: a set is there). */
async function checkBucket(target: string, check: boolean): Promise<void> {
  const bucket = target.replace(/^(s3:\/\/[^/]+).*$/, "$1");
  try {
    await stat(bucket);
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException).code === "ENOENT";
    throw new Error(missing ? `Can't open output: bucket of [${target}] does not exist` : `Can't open output: ${oneLine((e as Error).message)}`);
  }
  const s = bucket === target ? null : await stat(target).catch(() => null);
  if (s?.isFile()) throw new Error(`Can't open output: [${target}] is an object, not a folder of objects`);
  if (!s && check) throw new Error(`Target directory [${target}] does not exist`);
}

/**
 * Leftovers of failed runs: an inc/diff refuses an unfinished set. `auto` holds the domain lock,
 * so a run marker it finds is a dead run's: returned, to be healed once connected.
 */
async function refuseUnfinishedSet(args: BackupArgs, outDir: string, stdoutMode: boolean, log: Logger): Promise<{ dirState: TargetDirState; deadRun: RunMarker | null }> {
  const dirState = await inspectTargetDir(outDir);
  // The original's refusal first (scripts look for its message; the run marker is a `*.partial`
  // too), then ours, which also covers stdout mode.
  if ((args.level === "inc" || args.level === "diff") && !stdoutMode) {
    const partial = partialFailure(dirState, outDir);
    if (partial) {
      await reportLeftoverJob(args, outDir, log);
      throw new BackupRefusal(...partial.lines);
    }
  }
  const marker = await readRunMarker(outDir, args.domain);
  if (marker && args.level === "auto" && !stdoutMode && !args.killonly) return { dirState, deadRun: marker };
  if (marker && (args.level === "inc" || args.level === "diff") && !args.killonly) {
    await reportLeftoverJob(args, outDir, log);
    throw new BackupRefusal(
      `Unfinished backup run found in target directory: [${outDir}] (${runMarkerFileName(args.domain)}: level ${marker.level}, checkpoint ${marker.checkpoint}, started ${marker.started}, pid ${marker.pid}).`,
      "Its checkpoint may have no saved data: an incremental backup now would miss changes. Run [-l auto] to continue safely, or a full backup into a new directory.",
    );
  }
  return { dirState, deadRun: null };
}

type Prepared = RunPlace & { dirState: TargetDirState; deadRun: RunMarker | null; compressLevel: number | null; stats: RunStats };

/** libvirt and the hypervisor host, signal handling, then the run; closes both at the end. */
async function connectAndRun(args: BackupArgs, io: BackupIO, log: Logger, p: Prepared): Promise<number> {
  log.info(`Libvirt library version: [${formatVersion(localLibVersion())}]`);
  log.debug(`Libvirt URI: [${args.uri}], target [${p.outDir}], checkpoint files in [${p.checkpointDir}]`);
  const sshLogin = startSshLogin(args, log);
  let conn: Connection;
  try {
    conn = await openLibvirt(args);
  } catch (e) {
    await dropSshLogin(sshLogin);
    const extra = (e as { code?: number }).code === C.VIR_ERR_AUTH_FAILED ? ["--user and --password options for SASL authentication are required."] : [];
    return fail(log, `Can't connect libvirt daemon: [${(e as Error).message}]`, ...extra);
  }
  let hypervisor: Hypervisor;
  try {
    hypervisor = await openHypervisor(args, conn, "backup", log, sshLogin);
  } catch (e) {
    await conn.close().catch(() => undefined);
    if (e instanceof SessionError) return fail(log, e.message);
    throw e;
  }
  const cleanup = new Cleanup();
  const host = hypervisor.host;
  // Interrupted: remote qemu-nbd and the ssh master end when their stdin closes.
  if (host instanceof SshHost) cleanup.add(() => host.abandon());
  const stopSignals = interruptOnSignals(cleanup, log, p.stdoutMode ? io.stdout : null, { sigpipe: !isObjectPath(p.outDir) });
  try {
    const nbdPorts = new NbdPortPool(args.nbdPorts);
    return await runConnected({ args, io, log, conn, cleanup, noprogress: args.noprogress || args.quiet || eventsOnStderr(args), ...hypervisor, ...p, nbdPorts, nbdPort: null, scratchDirReady: null });
  } catch (e) {
    await cleanup.run(log);
    if (e instanceof BackupRefusal) return fail(log, ...e.lines);
    if (e instanceof CheckpointError || e instanceof JobStartError || e instanceof TargetDirError || e instanceof CptError) return fail(log, e.message);
    throw e;
  } finally {
    stopSignals();
    await host.close().catch(() => undefined);
    await conn.close().catch(() => undefined);
  }
}

/** The checks (nothing changes yet), then `-k` or the marked part that changes the set. */
async function runConnected(r: RunContext): Promise<number> {
  const { args, log } = r;
  // The job's scratch directory, made beside the domain checks (remote: an ssh session, off the
  // critical path); an offline run makes it too (`mkdir -p`, whether the domain runs is known later).
  if (!args.check && !args.killonly) r = { ...r, scratchDirReady: awaitLater(r.host.mkdir(args.scratchdir)) };
  const state = await domainState(r, await lookupDomain(r));
  if (args.check) return checkHealth(r, { ...state, ...(await chooseDisks(r, state.domXml, "inc")), cpt: await readCpt(r.cptPath) });
  if (r.deadRun) {
    await healUnfinishedRun(r, state.domain, state.offline, r.deadRun);
    r = { ...r, deadRun: null, dirState: await inspectTargetDir(r.outDir) };
  }
  const copyOnly = copyOnlyGeneration(r);
  const decision = decideLevel(state.givenLevel, copyOnly ? { ...r.dirState, hasFull: true } : r.dirState, r.outDir, r.stdoutMode || args.startonly || args.killonly);
  if (decision.message) log.info(decision.message);
  const { disks, level } = await chooseDisks(r, state.domXml, decision.level);
  if (disks.length === 0) {
    await saveConfigWithoutDisks(r, level, state);
    throw new BackupRefusal("Unable to detect disks suitable for backup.");
  }
  if (!args.killonly && !state.offline && (await runningBackupJob(state.domain, disks))) {
    throw new BackupRefusal(`Active block job for running domain: Check with [virsh domjobinfo ${args.domain}] or use option -k to kill the active job.`, leftoverJobHint(args, r.outDir));
  }
  log.info(`Backup will save [${disks.length}] attached disks.`);
  for (const d of disks) log.debug(`Disk [${d.target}]: [${d.path}] format [${d.format}]${d.raw ? " (raw: copied whole)" : ""}`);
  const workers = r.stdoutMode ? 1 : Math.max(1, Math.min(args.worker ?? disks.length, disks.length));
  log.info(`Concurrent backup processes: [${workers}]`);
  if (args.killonly) return killJob(state.domain, log);
  const cpt = await readCpt(r.cptPath);
  const checked = { ...state, disks, level, cpt, workers, firstIndex: 0, startsNewGeneration: false };
  if (copyOnly) return markedRun(...(await startNewGeneration(r, checked, copyOnly)));
  if ((level === "inc" || level === "diff") && !r.stdoutMode) {
    await refuseMissingData(r, cpt, disks);
    const problem = await continuationProblem(r, checked);
    if (problem !== null) return markedRun(...(await startNewGeneration(r, checked, problem)));
  }
  return markedRun(r, checked);
}

/** `auto` in a generation that holds only a copy (made offline): the next run starts a chain with a full. */
function copyOnlyGeneration(r: RunContext): string | null {
  if (r.args.level !== "auto" || r.generation < 2 || r.dirState.empty || r.dirState.hasFull) return null;
  return `generation [${r.outDir}] holds a copy backup only (made while the domain was offline)`;
}

/** Why the chain cannot continue (`auto` heals it); inc/diff refuse with the command that fixes it. */
async function continuationProblem(r: RunContext, m: Preflight): Promise<string | null> {
  const mismatch = chainNameMismatch(r, m.cpt);
  if (mismatch) throw new BackupRefusal(mismatch);
  const problem = await chainProblem(r, m);
  if (problem === null || r.args.level === "auto") return problem;
  throw new BackupRefusal(
    `Unable to continue the chain of [${r.outDir}]: ${problem}: run [-l auto] to start a new chain in this target, or [-l full] into a new directory.`,
  );
}

async function killJob(domain: Domain, log: Logger): Promise<number> {
  log.info("Stopping backup job");
  try {
    await stopBackupJob(domain);
    return 0;
  } catch (e) {
    return fail(log, `Unable to stop backup job: ${(e as Error).message}`);
  }
}

/**
 * The part that changes checkpoints and files, under the run marker (stdout mode: only when
 * checkpoints change in the working directory). A failure after the set may have changed
 * keeps the marker: the next inc/diff refuses.
 */
async function markedRun(r: RunContext, m: Preflight): Promise<number> {
  const writesMarker = !r.stdoutMode || (!m.offline && (m.level === "full" || m.level === "inc"));
  if (writesMarker) {
    try {
      await writeRunMarker(r.outDir, r.args.domain, { pid: process.pid, level: m.level, checkpoint: "?", started: new Date().toISOString() });
    } catch (e) {
      return fail(r.log, `Unable to write the run marker [${join(r.outDir, runMarkerFileName(r.args.domain))}]: ${oneLine((e as Error).message)}`);
    }
  }
  const changes: SetChanges = { setChanged: false };
  let keepMarker = false;
  try {
    const result = await changeSet(r, m, changes);
    keepMarker = result.keepMarker;
    return result.code;
  } catch (e) {
    keepMarker = changes.setChanged;
    throw e;
  } finally {
    if (writesMarker && !keepMarker && !r.cleanup.interrupted) await clearRunMarker(r.outDir, r.args.domain).catch(() => undefined);
  }
}

/** Checkpoints, the job, the disks, the side files. */
async function changeSet(r: RunContext, m: Preflight, changes: SetChanges): Promise<{ code: number; keepMarker: boolean }> {
  const checkpoint = await planCheckpoints(r, m, changes);
  if (checkpoint.done !== undefined) return { code: checkpoint.done, keepMarker: false };
  if ((await startJob(r, m, checkpoint, changes)).startonly) return { code: 0, keepMarker: true };
  changes.setChanged = true; // files of the set are written from here on
  const qcowInfo = startQcowInfo(r.host, m.disks); // beside the copy, saved after it
  const copied = await backupDisks(r, m, checkpoint);
  // Interrupted: the signal handler aborts the job and exits (its watchdog timer keeps the
  // process alive until then); nothing more is written to the set or the archive.
  if (r.cleanup.interrupted) await new Promise<never>(() => undefined);
  const code = await finishRun(r, m, checkpoint, copied, qcowInfo);
  return { code, keepMarker: code === 1 };
}
