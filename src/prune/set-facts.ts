/**
 * What prune needs to know of one backup set (a generation directory, or one zip archive): its
 * data files with their stream metadata, its checkpoint list, the domain it belongs to, the
 * creation times of its saved checkpoint XMLs, and whether a run is (or was left) writing there.
 */
import { StreamReader } from "../format/reader.js";
import type { StreamMetadata } from "../format/metadata.js";
import { parseCpt } from "../backupset/cpt.js";
import { checkpointOfXmlPath, isCptFileName, isDataFileName, isVmconfigFileName, parseDataFileName } from "../backupset/layout.js";
import { isPartialPath } from "../storage/durable.js";
import type { BackupSetSource, SetFile } from "../storage/set-source.js";
import { parseCheckpointXml } from "../libvirt/backup-xml.js";

export interface DataFileFacts {
  name: string;
  meta: StreamMetadata;
  /** A full or copy: the base the other files depend on. */
  base: boolean;
}

export interface SetFacts {
  data: DataFileFacts[];
  /** The `.cpt` list, oldest first; [] without one. */
  checkpoints: string[];
  /** From `<domain>.cpt`, else the `<name>` of a saved `vmconfig.*.xml`; null when neither says. */
  domain: string | null;
  /** `checkpoints/<name>.xml` → its `<creationTime>`, to tell libvirt's checkpoint of that name is this set's. */
  created: Map<string, number>;
  /** A file being written (`*.partial`, the run marker among them): a running or dead run's; null: none. */
  partial: string | null;
}

export class SetFactsError extends Error {}

/** A top-level file of the set (not in a subfolder such as `generation.2/`). */
const topLevel = (f: SetFile): boolean => !f.name.includes("/");

/** Python's naive `datetime.now().isoformat()` as a local time. */
export function parseLocalIso(date: string): Date | null {
  const m = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?$/.exec(date);
  if (!m) return null;
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number);
  return new Date(y!, mo! - 1, d!, h!, mi!, s!, Math.floor(Number((m[7] ?? "0").padEnd(6, "0")) / 1000));
}

async function readMeta(set: BackupSetSource, name: string): Promise<StreamMetadata> {
  let source;
  try {
    source = await set.open(name);
  } catch (e) {
    throw new SetFactsError(`Unable to read [${set.shownName(name)}]: ${(e as Error).message}`);
  }
  try {
    return (await StreamReader.open(source, { trailer: false })).meta;
  } catch (e) {
    throw new SetFactsError(`Unable to read the metadata of [${set.shownName(name)}]: ${(e as Error).message}`);
  } finally {
    await source.close();
  }
}

async function domainOf(set: BackupSetSource, files: SetFile[]): Promise<string | null> {
  const cpt = files.find((f) => isCptFileName(f.name));
  if (cpt) return cpt.name.slice(0, -".cpt".length);
  const vmconfig = files.find((f) => isVmconfigFileName(f.name));
  if (!vmconfig) return null;
  const m = /<name>([^<]+)<\/name>/.exec((await set.readFile(vmconfig.name)).toString("utf8"));
  return m ? m[1]!.trim() : null;
}

async function creationTimes(set: BackupSetSource, files: SetFile[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const f of files) {
    const name = checkpointOfXmlPath(f.name);
    if (name === null) continue;
    try {
      const created = parseCheckpointXml((await set.readFile(f.name)).toString("utf8")).creationTime;
      if (created !== null) out.set(name, created);
    } catch {
      // an unreadable XML proves nothing: that checkpoint is left alone
    }
  }
  return out;
}

/** The facts of `set`; files in subfolders other than `checkpoints/` are not the set's. */
export async function readSetFacts(set: BackupSetSource): Promise<SetFacts> {
  const all = await set.list();
  const top = all.filter(topLevel);
  const data: DataFileFacts[] = [];
  for (const f of top.filter((f) => isDataFileName(f.name))) {
    const level = parseDataFileName(f.name)?.level;
    data.push({ name: f.name, meta: await readMeta(set, f.name), base: level === "full" || level === "copy" });
  }
  const cpt = top.find((f) => isCptFileName(f.name));
  let checkpoints: string[] = [];
  if (cpt) {
    try {
      checkpoints = parseCpt((await set.readFile(cpt.name)).toString("utf8"), set.shownName(cpt.name));
    } catch (e) {
      throw new SetFactsError((e as Error).message);
    }
  }
  return {
    data,
    checkpoints,
    domain: await domainOf(set, top),
    created: await creationTimes(set, all),
    partial: top.find((f) => isPartialPath(f.name))?.name ?? null,
  };
}
