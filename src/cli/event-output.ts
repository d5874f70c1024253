/**
 * `--json` / `--json-file`: where a command's event stream goes (docs/events.md). Events on
 * stderr take it over: the log lines leave it (the log file keeps them). Every WARNING and
 * ERROR/CRITICAL record of the logging becomes a `warning`/`error` event.
 */
import { logging, LogFileError, type Logger, type LogManager } from "../report/log.js";
import { versionLine } from "../report/version.js";
import { eventsWanted, fileEventSink, runEvents, type EventOptions, type EventSink, type EventStream, type RunStartFields } from "../report/events.js";
import { oneLine } from "../util/one-line.js";

export interface EventOutputDeps {
  events: EventStream;
  manager: LogManager;
  stderr: { write(s: string): unknown };
}

/**
 * Opens the run's event stream when the options ask for it and writes `run-start`. Returns the
 * error line (to log, exit 1) when the `--json-file` cannot be opened, else null.
 */
export function startEvents(
  tool: string,
  o: EventOptions,
  start: RunStartFields,
  deps: EventOutputDeps = { events: runEvents, manager: logging, stderr: process.stderr },
): string | null {
  if (!eventsWanted(o)) return null;
  let sink: EventSink;
  if (o.jsonFile !== null) {
    try {
      sink = fileEventSink(o.jsonFile);
    } catch (e) {
      return `Unable to open the event file [${o.jsonFile}]: ${oneLine((e as Error).message)}`;
    }
  } else {
    sink = { write: (line) => deps.stderr.write(line) };
    deps.manager.setStderrLines(false);
  }
  deps.events.open({ tool, sink });
  deps.manager.onRecord((r) => deps.events.logRecord(r));
  deps.events.runStart(start);
  return null;
}

/** What a command with a log file (virtnbdrestore, virtnbdmap, virtnbdprune) needs to start its run. */
export interface RunLoggingOptions extends EventOptions {
  verbose: boolean;
  nocolor: boolean;
  logfile: string;
}

/**
 * The start of such a command's run: its events (`run-start`), its logging (stderr, `-L`), its
 * root logger with the version line logged. Null after one ERROR line (event file or log file
 * unusable): the command exits 1.
 */
export function startLoggedRun(prog: string, args: RunLoggingOptions, start: RunStartFields, argv: string[]): Logger | null {
  const refused = startEvents(prog, args, start);
  if (refused) {
    logging.getLogger({ func: "main" }).error(refused);
    return null;
  }
  try {
    logging.configure({ prog, verbose: args.verbose, nocolor: args.nocolor, logFile: args.logfile });
  } catch (e) {
    if (!(e instanceof LogFileError)) throw e;
    logging.getLogger({ func: "main" }).error(e.message);
    return null;
  }
  const log = logging.getLogger({ logger: "root", module: prog, func: "main" });
  log.info(versionLine(argv));
  return log;
}
