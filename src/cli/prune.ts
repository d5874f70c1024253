/** `virtnbdprune`: remove old backup chains by keep rules (ours; the original has none). */
import { setS3Endpoint } from "../storage/s3/client.js";
import { parsePruneArgs } from "./args.js";
import { runPrune } from "../prune/prune-command.js";
import { startLoggedRun } from "./event-output.js";
import { pruneRunStart } from "./run-start.js";

export async function main(argv: string[]): Promise<number> {
  const args = parsePruneArgs(argv);
  setS3Endpoint(args.s3Endpoint);
  const log = startLoggedRun("virtnbdprune", args, pruneRunStart(args), argv);
  return log ? runPrune(args, log) : 1;
}
