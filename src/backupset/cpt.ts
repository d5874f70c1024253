/** `<dom>.cpt`: the JSON list of checkpoint names, oldest first (Python `json.dumps(list)`). */
import { readFile } from "../storage/files.js";
import { pythonJsonDumps } from "../util/python-json.js";

export class CptError extends Error {}

export function formatCpt(names: readonly string[]): string {
  return pythonJsonDumps([...names]);
}

export function parseCpt(text: string, file: string): string[] {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new CptError(`Checkpoint list [${file}] is not valid JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(raw) || !raw.every((n) => typeof n === "string")) {
    throw new CptError(`Checkpoint list [${file}] is not a list of checkpoint names`);
  }
  return raw as string[];
}

/** The list, or [] when the file does not exist. */
export async function readCpt(path: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
  return parseCpt(text, path);
}
