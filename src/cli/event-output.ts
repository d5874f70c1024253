/**
 * `--json` / `--json-file`: where a command's event stream goes (docs/events.md). Events on
 * stderr take it over: the log lines leave it (the log file keeps them). Every WARNING and
 * ERROR/CRITICAL record of the logging becomes a `warning`/`error` event.
 */
import { logging, type LogManager } from "../report/log.js";
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
