/**
 * `virtnbdrestore` after its options: pick the generation of a target that has several, open
 * the set, pick its data files, then dump, verify or restore. Returns the exit code.
 */
import { generationWithCheckpoint, listGenerations } from "../backupset/generations.js";
import { openBackupSet, SetNotFoundError } from "../backupset/open-set.js";
import { DataFileError, selectDataFiles } from "../backupset/data-files.js";
import { dumpMetadata } from "../backupset/dump.js";
import { verifySet } from "../backupset/verify.js";
import type { Logger } from "../report/log.js";
import { runEvents } from "../report/events.js";
import type { BackupSetSource } from "../storage/set-source.js";
import { resolveAction, type RestoreArgs } from "./options.js";
import { isRemoteUri } from "../connect/remote.js";
import { isObjectPath, shownPath } from "../storage/object-path.js";
import { restoreToRaw } from "./raw-target.js";
import { restoreSet } from "./restore.js";

export type RestoreOutput = { write(text: string): unknown };

/**
 * The directory everything is read from (docs/behaviour.md, "Restore"): `-i` itself unless it
 * holds `generation.<N>` folders with data; then the generation holding `--until`, else the
 * newest. null: `--until` is in no generation (logged).
 */
async function resolveInput(args: RestoreArgs, log: Logger): Promise<string | null> {
  const generations = await listGenerations(args.input);
  if (!generations.some((g) => g.index > 1)) return args.input;
  let dir = generations.at(-1)!.dir;
  if (args.until) {
    const holder = await generationWithCheckpoint(args.input, args.until);
    if (!holder) {
      log.error(`Checkpoint [${args.until}] not found in any of the [${generations.length}] generations of [${args.input}].`);
      return null;
    }
    dir = holder.dir;
  }
  log.info(`Target holds [${generations.length}] generations: using [${dir}]`);
  return dir;
}

/** `--live` goes with a restore on this machine (-c is implied; -D, -N, -d, --until as usual). */
function liveRefusal(args: RestoreArgs): string | null {
  if (!args.live) return args.liveBandwidth !== 0 ? "Option --live-bandwidth goes with --live." : null;
  if (args.liveBandwidth < 0) return "Option --live-bandwidth must not be negative.";
  if (resolveAction(args) !== "restore") return "Option --live restores a domain: it does not go with dump or verify.";
  if (args.sequence || args.toRaw) return "Option --live restores the domain's disks: it does not go with --sequence or --to-raw.";
  if (isRemoteUri(args.uri)) return "Option --live serves the backup to a domain on this machine: not for a remote hypervisor (-U qemu+ssh://…).";
  return null;
}

/** Restores write images and domain files on this machine: `-o` is never a bucket. */
function targetRefusal(args: RestoreArgs): string | null {
  if (resolveAction(args) !== "restore" || !isObjectPath(args.output)) return null;
  return `Restore target [${shownPath(args.output)}] is in object storage: restore into a local directory (or --to-raw a device), backup sets can be read from s3:// with -i.`;
}

export async function runRestoreCommand(args: RestoreArgs, log: Logger, stdout: RestoreOutput): Promise<number> {
  const refusal = liveRefusal(args) ?? targetRefusal(args);
  if (refusal) {
    log.error(refusal);
    return 1;
  }
  let set: BackupSetSource;
  try {
    const input = await resolveInput(args, log);
    if (input === null) return 1;
    if (input !== args.input) args = { ...args, input };
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
    const dump = await dumpMetadata(set, files, log);
    stdout.write(dump.text + "\n");
    return dump.failed ? 1 : 0;
  }
  if (action === "verify") return (await verifySet(set, files, { bufferSize: args.buffsize, chains: !sequence, events: runEvents }, log)) ? 0 : 1;
  if (args.toRaw) return restoreToRaw(args, set, log);
  return restoreSet(args, set, sequence, log, stdout);
}
