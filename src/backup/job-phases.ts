/** The checkpoint a run builds on and creates, `-p`/`-T`, and the libvirt backup job. */
import { formatNbdUri } from "../nbd/index.js";
import { unixIdent } from "../backupset/layout.js";
import { oneLine } from "../util/one-line.js";
import { checkpointSize, CheckpointError, checkpointXmlForSet, forgetChainCheckpoints, planCheckpoint, recordCheckpoint, redefineMissing, removeAllForFull } from "./checkpoints.js";
import { startBackupJob } from "./job.js";
import { jobServerEvent } from "./nbd-server-event.js";
import type { BackupServer } from "../libvirt/backup-xml.js";
import { runEvents } from "../report/events.js";
import { removeStaleBitmaps } from "./stale-bitmaps.js";
import { writeRunMarker } from "./run-marker.js";
import { awaitLater } from "../util/in-flight.js";
import type { Preflight, RunCheckpoint, RunContext, SetChanges } from "./run-context.js";

/**
 * Checkpoint handling: redefine what libvirt lost, a full removes the old ones, then the plan.
 * `done` is the exit code when `-p` or `-T` ends the run here.
 */
export async function planCheckpoints(r: RunContext, m: Preflight, changes: SetChanges): Promise<RunCheckpoint & { done?: number }> {
  const { args, log } = r;
  const level = m.level;
  log.info("Checkpoint handling.");
  if (!m.offline) await redefineMissing(m.domain, r.checkpointDir, log);
  if (level === "full" && !m.offline) {
    changes.setChanged = true;
    await removeAllForFull(m.domain, r.cptPath, r.checkpointDir, r.chain, m.startsNewGeneration, log);
  }
  if (m.offline && m.startsNewGeneration) await forgetChainCheckpoints(m.domain, r.chain, log);
  // A full never fails on bitmaps of this chain's names that no checkpoint claims any more;
  // what could not be removed keeps its name: the new chain's first index comes after it.
  const afterLeftovers = level === "full" || level === "inc" || m.startsNewGeneration ? await removeStaleBitmaps(r, m) : 0;
  const firstIndex = level === "full" ? Math.max(m.firstIndex, afterLeftovers) : m.firstIndex;
  const plan = planCheckpoint({ level, cpt: level === "full" ? [] : m.cpt, cptPath: r.cptPath, offline: m.offline, chain: r.chain, firstIndex }, log);
  if ((level === "full" || level === "inc") && !m.offline) log.info(`Using checkpoint name: [${plan.name}].`);
  log.debug(`Checkpoint plan: level [${plan.level}] name [${plan.name}] parent [${plan.parent || "none"}] chain [${r.chain || "default"}] generation [${r.generation}] in [${r.outDir}]`);
  const ident = level === "copy" ? "copy" : level === "diff" ? unixIdent() : m.offline ? `${plan.name}.${unixIdent()}` : plan.name;
  const checkpoint = { plan, level, ident };
  if ((args.printonly || args.threshold !== null) && (level === "inc" || level === "diff") && !m.offline && plan.parent) {
    const size = await checkpointSize(m.domain, plan.parent);
    if (args.printonly) {
      log.info(`Estimated checkpoint backup size: [${size}] Bytes`);
      return { ...checkpoint, done: 0 };
    }
    if (args.threshold !== null && size < args.threshold) {
      log.info(`Backup size [${size}] does not meet required threshold [${args.threshold}], skipping backup.`);
      return { ...checkpoint, done: 0 };
    }
  }
  return checkpoint;
}

/**
 * Online: the libvirt backup job (pull mode, NBD server), its checkpoint recorded. `startonly`:
 * -s ends here. The job's scratch directory is made by then (`r.scratchDirReady`).
 */
export async function startJob(r: RunContext, m: Preflight, c: RunCheckpoint, changes: SetChanges): Promise<{ startonly: boolean }> {
  const { args, log } = r;
  if (m.offline) return { startonly: false };
  if (r.nbdHost === null) logLocalEndpoints(r, m);
  const { level, plan } = c;
  const createsCheckpoint = level === "full" || level === "inc";
  const mountpoints = args.freezeMountpoint ? args.freezeMountpoint.split(",") : null;
  const starting = startBackupJob({
    domain: m.domain,
    disks: m.disks,
    server: r.nbdHost !== null ? { tls: args.tls, name: r.nbdHost, ports: r.nbdPorts } : { transport: "unix", socket: args.socketfile },
    scratchDir: args.scratchdir,
    incremental: level === "inc" || level === "diff" ? plan.parent : null,
    checkpoint: createsCheckpoint ? { name: plan.name, parent: plan.parent } : null,
    pause: args.pause && !m.startedPaused,
    freezeMountpoints: mountpoints,
    noGuestAgent: m.noGuestAgent,
    scratchDirReady: (r.scratchDirReady ?? r.host.mkdir(args.scratchdir)).then(() => log.info(`Temporary scratch file target directory: [${args.scratchdir}]`)),
    log,
    onFrozen: (f) => (r.cleanup.frozen = f ? { domain: m.domain, mountpoints } : null),
  });
  // A signal while libvirt starts the job: the handler waits for the start, then aborts the job.
  r.cleanup.jobStart = { domain: m.domain, started: starting.then(() => true, () => false) };
  r.nbdPort = await starting;
  r.cleanup.jobStart = null;
  r.cleanup.jobDomain = m.domain;
  if (r.nbdHost !== null && r.nbdPort !== null) logRemoteEndpoints(r, m, r.nbdHost, r.nbdPort);
  const server: BackupServer =
    r.nbdHost !== null && r.nbdPort !== null ? { tls: args.tls, name: r.nbdHost, port: r.nbdPort } : { transport: "unix", socket: args.socketfile };
  runEvents.nbdServer(jobServerEvent(server, m.disks.map((d) => d.target)));
  if (createsCheckpoint) {
    changes.setChanged = true;
    log.info("Started backup job with checkpoint, saving information.");
    try {
      const xml = awaitLater(checkpointXmlForSet(m.domain, plan.name, log));
      await writeRunMarker(r.outDir, args.domain, { pid: process.pid, level, checkpoint: plan.name, started: new Date().toISOString() });
      await recordCheckpoint(xml, plan.name, r.cptPath, r.checkpointDir, log);
    } catch (e) {
      throw new CheckpointError(`Unable to save checkpoint information for [${plan.name}]: ${oneLine((e as Error).message)}`);
    }
  }
  if (!args.startonly) return { startonly: false };
  log.info("Started backup job for debugging, exiting.");
  r.cleanup.jobDomain = null;
  return { startonly: true };
}

function logLocalEndpoints(r: RunContext, m: Preflight): void {
  r.log.info("Local NBD Endpoint sockets:");
  for (const d of m.disks) r.log.info(`${d.target}: [nbd+unix:///${d.target}?socket=${r.args.socketfile}]`);
}

/** Remote: logged once the job runs, with the port it got (`-P` may be a range). */
function logRemoteEndpoints(r: RunContext, m: Preflight, host: string, port: number): void {
  r.log.info(`Remote NBD Endpoint host: [${host}:${port}]`);
  for (const d of m.disks) r.log.info(`${d.target}: [${formatNbdUri({ kind: "tcp", host, port }, d.target, r.args.tls)}]`);
}
