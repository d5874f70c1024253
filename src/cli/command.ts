/**
 * Glue for the three bin entries: run a command's main(), turn `UsageExit`
 * into output + exit status, make sure logging is closed, set the exit code.
 */
import { handleUsageExit, UsageExit } from "./args.js";
import { logging, type LogManager } from "../report/log.js";

export interface RunIO {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
  manager: LogManager;
}

/**
 * Run `main(argv)` and return the exit status instead of exiting:
 * - `UsageExit` (from parse*Args): its text is printed, its code returned;
 * - any other exception: logged as ERROR (or printed if logging is not set
 *   up) and 1 returned;
 * - in every case the log file and syslog are closed before returning.
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
  await io.manager.close();
  return code;
}
