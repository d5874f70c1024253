/** `virtnbdrestore`: dump, verify, and restore of backup sets (directory or zip). */
import { parseRestoreArgs, type RestoreArgs } from "./args.js";
import { logging, LogFileError, type Logger } from "../report/log.js";
import { exitCodeFromCounts } from "./command.js";
import { versionLine } from "../report/version.js";
import { openBackupSet, SetNotFoundError } from "../backupset/open-set.js";
import { DataFileError, selectDataFiles } from "../backupset/data-files.js";
import { dumpMetadata } from "../backupset/dump.js";
import { verifySet } from "../backupset/verify.js";
import type { BackupSetSource } from "../storage/set-source.js";
import { restoreSet } from "../restore/restore.js";

export type RestoreOutput = { write(text: string): unknown };

function resolveAction(args: RestoreArgs): RestoreArgs["action"] {
  if (args.output === "dump") return "dump";
  if (args.output === "verify") return "verify";
  return args.action;
}

export async function main(argv: string[], stdout: RestoreOutput = process.stdout): Promise<number> {
  const args = parseRestoreArgs(argv);
  try {
    logging.configure({ prog: "virtnbdrestore", verbose: args.verbose, nocolor: args.nocolor, logFile: args.logfile });
  } catch (e) {
    if (!(e instanceof LogFileError)) throw e;
    logging.getLogger({ func: "main" }).error(e.message);
    return 1;
  }
  const log = logging.getLogger({ logger: "root", module: "virtnbdrestore", func: "main" });
  log.info(versionLine(argv));

  let set: BackupSetSource;
  try {
    set = await openBackupSet(args.input);
  } catch (e) {
    log.error(e instanceof SetNotFoundError ? e.message : `Unable to open backup source [${args.input}]: ${(e as Error).message}`);
    return 1;
  }
  try {
    return await run(args, set, log, stdout);
  } finally {
    await set.close();
  }
}

async function run(args: RestoreArgs, set: BackupSetSource, log: Logger, stdout: RestoreOutput): Promise<number> {
  const sequence = args.sequence ? args.sequence.split(",") : undefined;
  if (sequence) {
    log.info("Using manual specified sequence of files.");
    if (!/full|copy/.test(sequence[0] ?? "")) {
      log.error("Sequence must start with full or copy backup.");
      return 1;
    }
  }
  const action = resolveAction(args);
  let files;
  try {
    files = await selectDataFiles(set, { sequence, disk: action === "restore" ? undefined : (args.disk ?? undefined) });
  } catch (e) {
    if (!(e instanceof DataFileError)) throw e;
    log.error(e.message);
    return 1;
  }
  if (files.length === 0) {
    log.error(`No data files found in directory: [${args.input}]`);
    return 1;
  }
  if (action === "dump") {
    stdout.write((await dumpMetadata(set, files, log)) + "\n");
    return 0;
  }
  if (action === "verify") {
    const ok = await verifySet(set, files, { bufferSize: args.buffsize, chains: !sequence }, log);
    return ok && exitCodeFromCounts(logging.counts) === 0 ? 0 : 1;
  }
  return restoreSet(args, set, sequence, log, stdout);
}
