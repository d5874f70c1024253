/** `virtnbdbackup`: full, copy, inc, diff and auto backups of a libvirt domain. */
import { parseBackupArgs } from "./args.js";
import { runBackup, type BackupIO } from "../backup/backup-run.js";

export async function main(argv: string[], io: BackupIO = { stdout: process.stdout }): Promise<number> {
  return runBackup(parseBackupArgs(argv), argv, io);
}
