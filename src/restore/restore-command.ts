/**
 * `virtnbdrestore` after its options: open the set, pick its data files, then dump, verify
 * or restore. Returns the exit code.
 */
import { openBackupSet, SetNotFoundError } from "../backupset/open-set.js";
import { DataFileError, selectDataFiles } from "../backupset/data-files.js";
import { dumpMetadata } from "../backupset/dump.js";
import { verifySet } from "../backupset/verify.js";
import type { Logger } from "../report/log.js";
import type { BackupSetSource } from "../storage/set-source.js";
import type { RestoreArgs } from "./options.js";
import { restoreSet } from "./restore.js";

export type RestoreOutput = { write(text: string): unknown };

/** `-o dump` and `-o verify` select those actions whatever `-a` says. */
function resolveAction(args: RestoreArgs): RestoreArgs["action"] {
  if (args.output === "dump") return "dump";
  if (args.output === "verify") return "verify";
  return args.action;
}

export async function runRestoreCommand(args: RestoreArgs, log: Logger, stdout: RestoreOutput): Promise<number> {
  let set: BackupSetSource;
  try {
    set = await openBackupSet(args.input);
  } catch (e) {
    log.error(e instanceof SetNotFoundError ? e.message : `Unable to open backup source [${args.input}]: ${(e as Error).message}`);
    return 1;
  }
  try {
    return await runOnSet(args, set, log, stdout);
  } finally {
    await set.close();
  }
}

async function runOnSet(args: RestoreArgs, set: BackupSetSource, log: Logger, stdout: RestoreOutput): Promise<number> {
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
  if (action === "verify") return (await verifySet(set, files, { bufferSize: args.buffsize, chains: !sequence }, log)) ? 0 : 1;
  return restoreSet(args, set, sequence, log, stdout);
}
