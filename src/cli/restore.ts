/** `virtnbdrestore`: dump, verify, and restore of backup sets (directory or zip). */
import { setS3Endpoint } from "../storage/s3/client.js";
import { parseRestoreArgs } from "./args.js";
import { runRestoreCommand, type RestoreOutput } from "../restore/restore-command.js";
import { startLoggedRun } from "./event-output.js";
import { restoreRunStart } from "./run-start.js";

export async function main(argv: string[], stdout: RestoreOutput = process.stdout): Promise<number> {
  const args = parseRestoreArgs(argv);
  setS3Endpoint(args.s3Endpoint);
  const log = startLoggedRun("virtnbdrestore", args, restoreRunStart(args), argv);
  return log ? runRestoreCommand(args, log, stdout) : 1;
}
