/** `virtnbdprune`: remove old backup chains by keep rules (ours; the original has none). */
import { parsePruneArgs } from "./args.js";
import { logging, LogFileError } from "../report/log.js";
import { versionLine } from "../report/version.js";
import { runPrune } from "../prune/prune-command.js";
import { startEvents } from "./event-output.js";
import { pruneRunStart } from "./run-start.js";

export async function main(argv: string[]): Promise<number> {
  const args = parsePruneArgs(argv);
  const refused = startEvents("virtnbdprune", args, pruneRunStart(args));
  if (refused) {
    logging.getLogger({ func: "main" }).error(refused);
    return 1;
  }
  try {
    logging.configure({ prog: "virtnbdprune", verbose: args.verbose, nocolor: args.nocolor, logFile: args.logfile });
  } catch (e) {
    if (!(e instanceof LogFileError)) throw e;
    logging.getLogger({ func: "main" }).error(e.message);
    return 1;
  }
  const log = logging.getLogger({ logger: "root", module: "virtnbdprune", func: "main" });
  log.info(versionLine(argv));
  return runPrune(args, log);
}
