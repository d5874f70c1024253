/**
 * `virtnbdmap`'s main: options, logging, and SIGINT/SIGTERM/SIGHUP as the stop of the mapping
 * (src/map/map-chain.ts does the work).
 */
import { setS3Endpoint } from "../storage/s3/client.js";
import { parseMapArgs } from "./args.js";
import { signalQueue } from "../connect/signals.js";
import { mapChain } from "../map/map-chain.js";
import { startLoggedRun } from "./event-output.js";
import { mapRunStart } from "./run-start.js";

export async function main(argv: string[]): Promise<number> {
  const args = parseMapArgs(argv);
  setS3Endpoint(args.s3Endpoint);
  const log = startLoggedRun("virtnbdmap", args, mapRunStart(args), argv);
  if (!log) return 1;
  log.info(`Logfile: [${args.logfile}]`);

  // Signals from here on end the run cleanly (exit 0), also while the chain is being indexed.
  const signals = signalQueue();
  try {
    return await mapChain(args, log, signals.queue);
  } finally {
    signals.dispose();
  }
}

