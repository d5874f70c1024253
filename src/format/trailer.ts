/**
 * The compression trailer: one entry per `data` frame, the byte length of its single lz4
 * frame, or for extents read in pieces (length >= max request size) the list of frame lengths.
 * Written after `stop` as Python `json.dumps(list)`, `\r\n`, then a `comp` header.
 */
import { pythonJsonDumps, type PyJson } from "../util/python-json.js";

export type TrailerEntry = number | number[];

/** Trailer JSON text as the original writes it: `[47, {"67108918": [33554455, 33554463]}]`. */
export function formatTrailer(entries: readonly TrailerEntry[]): string {
  const list: PyJson[] = entries.map((e) =>
    typeof e === "number" ? e : { [String(e.reduce((a, b) => a + b, 0))]: e },
  );
  return pythonJsonDumps(list);
}

export class TrailerError extends Error {}

const isLength = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v > 0;

/** Parses trailer JSON; chunked entries become arrays of frame lengths (their sum is checked). */
export function parseTrailer(text: string): TrailerEntry[] {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new TrailerError(`invalid compression trailer JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(raw)) throw new TrailerError("compression trailer is not a JSON list");
  return raw.map((e, i): TrailerEntry => {
    if (isLength(e)) return e;
    if (typeof e === "object" && e !== null && !Array.isArray(e)) {
      const members = Object.entries(e as Record<string, unknown>);
      const [key, frames] = members[0] ?? [];
      if (members.length === 1 && Array.isArray(frames) && frames.length > 0 && frames.every(isLength)) {
        const total = frames.reduce((a: number, b: number) => a + b, 0);
        if (String(total) !== key) throw new TrailerError(`compression trailer entry ${i}: total ${key} is not the sum ${total}`);
        return frames as number[];
      }
    }
    throw new TrailerError(`compression trailer entry ${i} is malformed: ${JSON.stringify(e)}`);
  });
}
