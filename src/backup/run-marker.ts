/**
 * Crash safety: a run that changes checkpoints first leaves `<dom>.run.partial` in the
 * directory of the checkpoint list, and removes it only when every file of the run is
 * durable. A later inc/diff that finds it refuses (like the original with any `*.partial`),
 * because the checkpoint list may name a checkpoint whose data was never saved.
 */
import { readFile, unlink } from "../storage/files.js";
import { join } from "node:path";
import { runMarkerFileName } from "../backupset/layout.js";
import { fsyncDirectory, writeFileDurably } from "../storage/durable.js";

export interface RunMarker {
  pid: number;
  level: string;
  checkpoint: string;
  started: string;
}

export async function writeRunMarker(dir: string, domain: string, marker: RunMarker): Promise<void> {
  await writeFileDurably(join(dir, runMarkerFileName(domain)), JSON.stringify(marker), true);
}

export async function readRunMarker(dir: string, domain: string): Promise<RunMarker | null> {
  try {
    return JSON.parse(await readFile(join(dir, runMarkerFileName(domain)), "utf8")) as RunMarker;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    return { pid: 0, level: "?", checkpoint: "?", started: "?" };
  }
}

export async function clearRunMarker(dir: string, domain: string): Promise<void> {
  try {
    await unlink(join(dir, runMarkerFileName(domain)));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  await fsyncDirectory(dir);
}
