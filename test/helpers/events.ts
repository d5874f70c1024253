/**
 * The event stream of `--json` / `--json-file` (docs/events.md) in tests: parse the lines and
 * validate each against docs/events.schema.json with ajv.
 *
 *   const events = checkEvents(text);            // asserts framing and schema; the objects
 *   events.at(-1)!.event === "run-end"
 *   const validate = eventValidator();  validate(obj)  // null when valid, else the errors as text
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";

export const EVENTS_SCHEMA_PATH = join(new URL("../..", import.meta.url).pathname, "docs/events.schema.json");

/** One event as written: the common fields, then the event's own. */
export interface EventRecord {
  schema: string;
  event: string;
  time: string;
  tool: string;
  pid: number;
  [field: string]: unknown;
}

/** The schema compiled with ajv (strict, union types allowed: `"type": [...]` is standard JSON Schema). */
export function compileEventSchema(): { ajv: Ajv2020; schema: { $id: string; $defs: Record<string, unknown> } } {
  const schema = JSON.parse(readFileSync(EVENTS_SCHEMA_PATH, "utf8")) as { $id: string; $defs: Record<string, unknown> };
  const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
  ajv.addSchema(schema);
  return { ajv, schema };
}

/** A validator: null for a valid event, else what is wrong (checked against its event's definition for a readable message). */
export function eventValidator(): (event: unknown) => string | null {
  const { ajv, schema } = compileEventSchema();
  const whole = ajv.getSchema(schema.$id)!;
  return (event) => {
    if (whole(event)) return null;
    const name = (event as { event?: unknown }).event;
    const def = typeof name === "string" && name in schema.$defs ? ajv.getSchema(`${schema.$id}#/$defs/${name}`) : undefined;
    if (def && !def(event)) return ajv.errorsText(def.errors);
    return ajv.errorsText(whole.errors);
  };
}

/** Every line of `text` one JSON object, ending with a newline; no blank lines. */
export function parseEventLines(text: string): EventRecord[] {
  if (text === "") return [];
  assert.ok(text.endsWith("\n"), `event stream does not end with a newline: ${JSON.stringify(text.slice(-80))}`);
  return text
    .slice(0, -1)
    .split("\n")
    .map((line) => {
      try {
        return JSON.parse(line) as EventRecord;
      } catch {
        assert.fail(`not a JSON line: ${JSON.stringify(line)}\nin:\n${text}`);
      }
    });
}

/** Parses the stream and validates every event; asserts run-start first and run-end last. */
export function checkEvents(text: string): EventRecord[] {
  const events = parseEventLines(text);
  const validate = eventValidator();
  for (const e of events) {
    const problem = validate(e);
    assert.equal(problem, null, `invalid ${e.event} event: ${problem}\n${JSON.stringify(e)}`);
  }
  assert.ok(events.length >= 2, `too few events:\n${text}`);
  assert.equal(events[0]!.event, "run-start", text);
  assert.equal(events.at(-1)!.event, "run-end", text);
  assert.equal(events.filter((e) => e.event === "run-start" || e.event === "run-end").length, 2, text);
  return events;
}

/** The events named `name`. */
export function eventsNamed(events: EventRecord[], name: string): EventRecord[] {
  return events.filter((e) => e.event === name);
}
