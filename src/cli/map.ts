/**
 * `virtnbdmap`'s main: options, logging, and SIGINT/SIGTERM/SIGHUP as the stop of the mapping
 * (src/map/map-chain.ts does the work).
 */
import { parseMapArgs } from "./args.js";
import { logging, LogFileError } from "../report/log.js";
import { versionLine } from "../report/version.js";
import { signalQueue } from "../connect/signals.js";
import { mapChain } from "../map/map-chain.js";
import { startEvents } from "./event-output.js";
import { mapRunStart } from "./run-start.js";

export async function main(argv: string[]): Promise<number> {
  const args = parseMapArgs(argv);
  const refused = startEvents("virtnbdmap", args, mapRunStart(args));
  if (refused) {
    logging.getLogger({ func: "main" }).error(refused);
    return 1;
  }
  try {
    logging.configure({ prog: "virtnbdmap", verbose: args.verbose, nocolor: args.nocolor, logFile: args.logfile });
  } catch (e) {
    if (!(e instanceof LogFileError)) throw e;
    logging.getLogger({ func: "main" }).error(e.message);
    return 1;
  }
  const log = logging.getLogger({ logger: "root", module: "virtnbdmap", func: "main" });
  log.info(versionLine(argv));
  log.info(`Logfile: [${args.logfile}]`);

  // Signals from here on end the run cleanly (exit 0), also while the chain is being indexed.
  const signals = signalQueue();
  try {
    return await mapChain(args, log, signals.queue);
  } finally {
    signals.dispose();
  }
}

