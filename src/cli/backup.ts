/** `virtnbdbackup`: full, copy, inc, diff and auto backups of a libvirt domain. */
import { setS3Endpoint } from "../storage/s3/client.js";
import { parseBackupArgs } from "./args.js";
import { runBackup, type BackupIO } from "../backup/backup-run.js";
import { logging } from "../report/log.js";
import { startEvents } from "./event-output.js";
import { backupRunStart } from "./run-start.js";

export async function main(argv: string[], io: BackupIO = { stdout: process.stdout }): Promise<number> {
  const args = parseBackupArgs(argv);
  setS3Endpoint(args.s3Endpoint);
  const refused = startEvents("virtnbdbackup", args, backupRunStart(args));
  if (refused) {
    logging.getLogger({ func: "main" }).error(refused);
    return 1;
  }
  return runBackup(args, argv, io);
}
