/**
 * Glue for the bin entries: run a command's main(), turn `UsageExit` into output + exit
 * status, end the event stream with the exit code (`run-end`), make sure logging is closed,
 * set the exit code.
 */
import { handleUsageExit, UsageExit } from "./args.js";
import { logging, type LogManager } from "../report/log.js";
import { runEvents, type EventStream } from "../report/events.js";
import { closeS3 } from "../storage/s3/client.js";

export interface RunIO {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
  manager: LogManager;
  /** the run's event stream (default: the process-wide one main() opened with `--json`) */
  events?: EventStream;
}

/**
 * Run `main(argv)` and return the exit status instead of exiting:
 * - `UsageExit` (from parse*Args): its text is printed, its code returned;
 * - any other exception: logged as ERROR (or printed if logging is not set
 *   up) and 1 returned;
 * - in every case the event stream gets its `run-end` (when main opened it) and the log file
 *   and syslog are closed before returning.
 *
 * A bin file then is: `process.exitCode = await runCommand(backupMain);`
 */
export async function runCommand(
  main: (argv: string[]) => Promise<number> | number,
  argv: string[] = process.argv.slice(2),
  io: RunIO = { stdout: process.stdout, stderr: process.stderr, manager: logging },
): Promise<number> {
  let code: number;
  try {
    code = await main(argv);
  } catch (e) {
    if (e instanceof UsageExit) code = handleUsageExit(e, io.stdout, io.stderr);
    else {
      const msg = e instanceof Error ? (e.stack ?? e.message) : String(e);
      io.manager.getLogger({ func: "main" }).error(`Unexpected error: ${msg}`);
      code = 1;
    }
  }
  (io.events ?? runEvents).end(code);
  await io.manager.close();
  await closeS3().catch(() => undefined);
  return code;
}
