/**
 * What a backup run undoes when it is interrupted or fails: the libvirt job (also one still
 * starting), frozen guest file systems, helpers (qemu-nbd, the ssh master), and the signal
 * handling that triggers it: SIGINT/SIGTERM/SIGHUP/SIGPIPE, and in stdout mode the reader of
 * stdout going away. `.partial` files and the run marker stay; the process exits 1.
 */
import type { Domain } from "../libvirt/domain.js";
import { onSignals, signalNumber, TERMINATING_SIGNALS } from "../connect/signals.js";
import { logging, type Logger } from "../report/log.js";
import { runEvents } from "../report/events.js";
import { stopBackupJob } from "./job.js";

/** How long signal cleanup (thaw, abort the job) may take before the process exits anyway. */
const CLEANUP_LIMIT_MS = 15_000;
/** Time qemu gets to notice our closed NBD connections before the job is aborted. */
const CLOSE_BEFORE_ABORT_MS = 500;

/** Things to undo when the run is interrupted or fails. */
export class Cleanup {
  jobDomain: Domain | null = null;
  /** Set by the signal handler: the run ends with exit 1 and its marker stays. */
  interrupted = false;
  /** A job start in flight (a signal during `backupBegin`): settles true when the job runs. */
  jobStart: { domain: Domain; started: Promise<boolean> } | null = null;
  frozen: { domain: Domain; mountpoints: string[] | null } | null = null;
  private readonly hooks = new Set<() => void | Promise<void>>();
  /** Runs first on cleanup; one that returns a promise is waited for (uploads being aborted). */
  add(fn: () => void | Promise<void>): void {
    this.hooks.add(fn);
  }
  async run(log: Logger): Promise<void> {
    const waits: Promise<void>[] = [];
    for (const fn of this.hooks) {
      try {
        const p = fn();
        if (p) waits.push(p.catch(() => undefined));
      } catch {
        /* best effort */
      }
    }
    await Promise.all(waits);
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
      await stopBackupJob(this.jobDomain).catch((e: Error) => log.error(`Unable to stop backup job: ${e.message}`));
      this.jobDomain = null;
    }
  }
}

/**
 * On a signal (or EPIPE on `stdout`: Node ignores SIGPIPE, the write fails): log it, run the
 * cleanup (at most CLEANUP_LIMIT_MS: libvirt may not answer at all), end the event stream
 * (`run-end`, exit code 1), close the log, exit 1.
 * `sigpipe: false` (object storage): SIGPIPE stays ignored, as Node has it: with a handler, a
 * write to an HTTP connection the server closed (a refused upload) raises it.
 * Returns the function that removes the handlers.
 */
export function interruptOnSignals(cleanup: Cleanup, log: Logger, stdout: NodeJS.WritableStream | null, options: { sigpipe?: boolean } = {}): () => void {
  let handling = false;
  const abort = (line: string) => {
    if (handling) return;
    handling = true;
    cleanup.interrupted = true;
    log.error(line);
    let watchdog: NodeJS.Timeout | undefined;
    const stuck = new Promise<void>((resolve) => {
      watchdog = setTimeout(() => {
        log.error(`Cleanup did not finish within ${CLEANUP_LIMIT_MS / 1000} s (libvirt does not answer): a backup job may still be active, check with [virsh domjobinfo <domain>].`);
        resolve();
      }, CLEANUP_LIMIT_MS);
    });
    void Promise.race([cleanup.run(log).catch(() => undefined), stuck]).finally(async () => {
      clearTimeout(watchdog);
      runEvents.end(1);
      await logging.close().catch(() => undefined);
      process.exit(1);
    });
  };
  const outputGone = (e: NodeJS.ErrnoException) => abort(`Output stream closed: [${e.code ?? e.message}]: the reader of stdout went away, stopping backup.`);
  const removeSignals = onSignals((signal) => abort(`Signal caught: ${signalNumber(signal)}`), options.sigpipe === false ? TERMINATING_SIGNALS : [...TERMINATING_SIGNALS, "SIGPIPE"]);
  stdout?.on("error", outputGone);
  return () => {
    removeSignals();
    stdout?.off("error", outputGone);
  };
}
