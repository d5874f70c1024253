/** The end of a backup run: stop the job, save the side files, say how it went. */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { CHECKPOINT_DIR, cptFileName, isCheckpointXmlName } from "../backupset/layout.js";
import { exitCodeFromCounts } from "../report/exit-code.js";
import { humanize } from "../report/humanize.js";
import { logging } from "../report/log.js";
import type { BackupTarget } from "../storage/target.js";
import type { CopiedDisks } from "./disk-workers.js";
import { stopBackupJob } from "./job.js";
import type { Preflight, RunCheckpoint, RunContext } from "./run-context.js";
import { saveAutostartAndOsinfo, saveBootFiles, saveQcowInfo, saveTpmState, saveVmConfig, type QcowInfo, type SideFileContext } from "./side-files.js";

/** Returns the exit code: 1 when a disk (or anything logged as an error) failed, 2 for `--strict` with warnings. */
export async function finishRun(r: RunContext, m: Preflight, c: RunCheckpoint, copied: CopiedDisks, qcowInfo: QcowInfo): Promise<number> {
  const { args, log } = r;
  // libvirt stops the job and answers for autostart while the side files are written.
  let stopping: Promise<void> | null = null;
  if (!m.offline) {
    log.info("Backup jobs finished, stopping backup task.");
    stopping = stopBackupJob(m.domain)
      .catch((e: Error) => log.error(`Unable to stop backup job: ${e.message}`))
      .then(() => void (r.cleanup.jobDomain = null));
  }
  const autostart = m.domain.autostart().catch(() => false);
  // Side files also after a failed disk, as the original.
  const archive = copied.archive;
  const ctx: SideFileContext = { dir: r.outDir, archive, host: r.host, level: c.level, ident: c.ident, log };
  try {
    await saveVmConfig(ctx, m.xml);
    if (archive && (c.level === "full" || c.level === "inc")) await archiveCheckpoints(r, archive);
    await saveBootFiles(ctx, m.domXml.osPaths());
    await saveTpmState(ctx, m.domXml);
    await saveQcowInfo(ctx, m.disks, qcowInfo);
    await saveAutostartAndOsinfo(ctx, await autostart, m.osinfo);
  } finally {
    await stopping;
  }

  // What the run found: errors logged without failing a disk (a side file, a job that would
  // not stop) fail it too; `--strict` makes warnings exit 2.
  const code = copied.failures > 0 ? 1 : exitCodeFromCounts(log.tally, args.strict);
  r.stats.bytes = copied.totalBytes;
  if (code === 1) log.error("Error during backup");
  else if (code === 2) log.info(`[${log.tally.warnings}] Warnings detected during backup operation, forcing exit code 2`);
  else {
    log.info(`Total saved disk data: [${humanize(copied.totalBytes)}]`);
    log.info("Finished successfully");
  }
  if (archive) {
    const logPath = logging.logFile;
    if (logPath) await archive.putFile(logPath.slice(logPath.lastIndexOf("/") + 1), await readFile(logPath));
    await archive.close();
  }
  return code;
}

/** Stdout mode: the `.cpt` file and the checkpoint XMLs go into the archive too. */
async function archiveCheckpoints(r: RunContext, archive: BackupTarget & { addDirectory(name: string): Promise<void> }): Promise<void> {
  await archive.putFile(cptFileName(r.args.domain), await readFile(r.cptPath, "utf8"));
  const arcDir = r.args.checkpointdir ? r.args.checkpointdir.replace(/^(\.\/|\/)+/, "").replace(/\/+$/, "") : CHECKPOINT_DIR;
  await archive.addDirectory(`${arcDir}/`);
  for (const name of (await readdir(r.checkpointDir)).filter(isCheckpointXmlName).sort()) {
    await archive.putFile(`${arcDir}/${name}`, await readFile(join(r.checkpointDir, name), "utf8"));
  }
}
