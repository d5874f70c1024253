/** The disks of a run, `workers` at a time, each into its data file (or zip entry) with a progress bar. */
import { join } from "node:path";
import { clientTls, serverTlsDir, type RemoteNbd } from "../connect/remote.js";
import { dirtyBitmapContext, type ClientTlsOptions, type NbdTarget } from "../nbd/index.js";
import { logging, withThread } from "../report/log.js";
import { runEvents, type DiskEvents } from "../report/events.js";
import { Progress, type DiskProgress } from "../report/progress.js";
import { DirectoryTarget } from "../storage/directory-target.js";
import type { BackupTarget } from "../storage/target.js";
import { ZipTarget } from "../storage/zip-target.js";
import { isObjectPath, shownPath } from "../storage/object-path.js";
import { ObjectTarget } from "../storage/s3/target.js";
import { oneLine } from "../util/one-line.js";
import { BufferPool } from "../util/buffer-pool.js";
import type { SelectedDisk } from "../libvirt/disk-selection.js";
import { backupDisk } from "./disk-backup.js";
import { READ_BUDGET } from "./read-budget.js";
import { qemuNbdServerEvent } from "../qemu/nbd-server-event.js";
import type { Preflight, RunCheckpoint, RunContext } from "./run-context.js";

export interface CopiedDisks {
  /** stdout mode: the zip archive the side files go into too */
  archive: ZipTarget | null;
  totalBytes: number;
  failures: number;
}

/** The run's directory, or its folder in a bucket (uploads under way are aborted on a signal). */
function targetFor(r: RunContext): BackupTarget {
  if (!isObjectPath(r.outDir)) return new DirectoryTarget(r.outDir);
  const target = new ObjectTarget(r.outDir);
  r.cleanup.add(() => target.abortAll());
  return target;
}

/**
 * Runs `job` on every item, `workers` at a time; each worker reads through its own pool of
 * `budget` (read-budget.ts; a disk over TCP sizes it for its link), so a disk's reads never wait
 * for another disk's: one budget shared by all disks left two disks at once with one read each
 * in flight, and on stores whose reads take time `-w 2` gained 1.56× where nbdcopy gained 1.98×
 * (bench/multi-disk.ts). After `stopped()` no further item starts.
 */
export async function eachWithWorkers<T>(items: readonly T[], workers: number, stopped: () => boolean, job: (item: T, pool: BufferPool) => Promise<void>, budget = READ_BUDGET): Promise<void> {
  const queue = [...items];
  const worker = async () => {
    const pool = BufferPool.budget(budget);
    for (let item = queue.shift(); item !== undefined && !stopped(); item = queue.shift()) await job(item, pool);
  };
  await Promise.all(Array.from({ length: Math.max(1, workers) }, worker));
}

export async function backupDisks(r: RunContext, m: Preflight, c: RunCheckpoint): Promise<CopiedDisks> {
  const archive: ZipTarget | null = r.stdoutMode ? new ZipTarget(r.io.stdout, r.outDir) : null;
  const target: BackupTarget = archive ?? targetFor(r);
  const progress = new Progress({ noprogress: r.noprogress });
  logging.setConsole(progress);
  const result: CopiedDisks = { archive, totalBytes: 0, failures: 0 };
  // After a signal no further disk starts: the job is being aborted.
  await eachWithWorkers(m.disks, m.workers, () => r.cleanup.interrupted, async (d, pool) => {
    const dlog = r.log.child({ thread: d.target, module: "disktarget", func: "backup" });
    let bar: DiskProgress | null = null;
    let events: DiskEvents | null = null;
    try {
      const copied = await withThread(d.target, () =>
        backupDisk({
          ...diskJob(r, m, c, d),
          target,
          pool,
          log: dlog,
          onStart: ({ file, total }) => {
            bar = progress.bar(d.target, total);
            events = runEvents.disk({ disk: d.target, level: d.raw ? "copy" : c.level, target: r.stdoutMode ? file : shownPath(join(r.outDir, file)), total });
          },
          onProgress: (n) => {
            bar?.increment(n);
            events?.progress(n);
          },
          onNbdServer: (s) => runEvents.nbdServer(qemuNbdServerEvent(s.target, s.exportName, s.tls, d.target)),
          onCleanup: (fn) => r.cleanup.add(fn),
          onNbdPort: (port) => (r.nbdPort ??= port),
        }),
      );
      (events as DiskEvents | null)?.done({ bytes: copied.dataBytes, checksum: copied.checksum });
      result.totalBytes += copied.dataBytes;
      // Stdout mode: the data went into the zip archive, not the working directory.
      const where = r.stdoutMode ? `${copied.file}] in the zip archive on stdout` : `${join(r.outDir, copied.file)}]`;
      if (r.noprogress) dlog.info(`Backup of disk [${d.target}] finished, file: [${where}`);
    } catch (e) {
      result.failures++;
      dlog.error(`Disk backup failed: [${oneLine((e as Error).message)}]`);
    } finally {
      (bar as DiskProgress | null)?.done();
    }
  });
  progress.stop();
  logging.setConsole(null);
  return result;
}

/** What one disk's transfer needs to know about the run: level, names, where its data comes from. */
function diskJob(r: RunContext, m: Preflight, c: RunCheckpoint, d: SelectedDisk) {
  const { args } = r;
  const { level, plan } = c;
  const incremental = level === "inc" || level === "diff";
  const socket = args.socketfile;
  return {
    disk: d,
    level,
    ident: c.ident,
    checkpointName: plan.name,
    parentCheckpoint: incremental ? plan.parent : "",
    raw: args.type === "raw" || d.raw,
    compressLevel: r.compressLevel,
    sparseDetection: !args.noSparseDetection || !incremental,
    useNbdinfo: args.qemu,
    online: m.offline ? null : { ...onlineTarget(r, socket), dirtyContext: dirtyBitmapContext(`backup-${d.target}`) },
    offline: m.offline
      ? { host: r.host, socket: `${socket}.${d.target}`, bitmap: incremental ? plan.name : null, tcp: offlineTcp(r, m.disks.indexOf(d)) }
      : null,
  };
}

/** The job's NBD server: the unix socket, or (remote) TCP on `--nbd-port` with `--tls`. */
function onlineTarget(r: RunContext, socket: string): { target: NbdTarget; tls: ClientTlsOptions | null } {
  if (r.nbdHost === null) return { target: { kind: "unix", path: socket }, tls: null };
  if (r.nbdPort === null) throw new Error("the backup job's NBD port is not known");
  return { target: { kind: "tcp", host: r.nbdHost, port: r.nbdPort }, tls: clientTls(r.args) };
}

/** Remote offline: qemu-nbd on the hypervisor at `--nbd-port + disk index`, or a free port of the `-P` range (docs/behaviour.md, "Offline backup"). */
function offlineTcp(r: RunContext, index: number): RemoteNbd | null {
  if (r.nbdHost === null) return null;
  const a = r.args;
  return { ports: r.nbdPorts, index, bind: a.nbdIp || undefined, connectHost: r.nbdHost, tlsDir: serverTlsDir(a), tls: clientTls(a) };
}
