/** `virtnbdrestore`: dump, verify, and restore of backup sets (directory or zip). */
import { parseRestoreArgs } from "./args.js";
import { logging, LogFileError } from "../report/log.js";
import { versionLine } from "../report/version.js";
import { runRestoreCommand, type RestoreOutput } from "../restore/restore-command.js";
import { startEvents } from "./event-output.js";
import { restoreRunStart } from "./run-start.js";

export async function main(argv: string[], stdout: RestoreOutput = process.stdout): Promise<number> {
  const args = parseRestoreArgs(argv);
  const refused = startEvents("virtnbdrestore", args, restoreRunStart(args));
  if (refused) {
    logging.getLogger({ func: "main" }).error(refused);
    return 1;
  }
  try {
    logging.configure({ prog: "virtnbdrestore", verbose: args.verbose, nocolor: args.nocolor, logFile: args.logfile });
  } catch (e) {
    if (!(e instanceof LogFileError)) throw e;
    logging.getLogger({ func: "main" }).error(e.message);
    return 1;
  }
  const log = logging.getLogger({ logger: "root", module: "virtnbdrestore", func: "main" });
  log.info(versionLine(argv));

  return runRestoreCommand(args, log, stdout);
}
