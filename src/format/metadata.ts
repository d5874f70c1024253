/** The stream's `meta` frame: JSON written as Python's `json.dumps(obj, indent=4)`. */
import { pythonJsonDumps } from "../util/python-json.js";

/** Stream metadata, version 2, in the original's key order. */
export interface StreamMetadata {
  virtualSize: number;
  dataSize: number;
  date: string;
  diskName: string;
  diskFormat: string;
  checkpointName: string;
  /** false, or the lz4 level (older sets: true). */
  compressed: false | number | true;
  compressionMethod: string;
  parentCheckpoint: string;
  incremental: boolean;
  streamVersion: number;
}

export const STREAM_VERSION = 2;

/** The metadata JSON text, byte-identical to the original's. */
export function formatMetadata(meta: StreamMetadata): string {
  return pythonJsonDumps(
    {
      virtualSize: meta.virtualSize,
      dataSize: meta.dataSize,
      date: meta.date,
      diskName: meta.diskName,
      diskFormat: meta.diskFormat,
      checkpointName: meta.checkpointName,
      compressed: meta.compressed,
      compressionMethod: meta.compressionMethod,
      parentCheckpoint: meta.parentCheckpoint,
      incremental: meta.incremental,
      streamVersion: meta.streamVersion,
    },
    4,
  );
}

/** Local time as Python's `datetime.now().isoformat()` (fraction left out at 0 µs). */
export function isoLocalNow(epochMicros = Math.floor((performance.timeOrigin + performance.now()) * 1000)): string {
  const d = new Date(Math.floor(epochMicros / 1000));
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  const micros = epochMicros % 1_000_000;
  const base =
    `${p(d.getFullYear(), 4)}-${p(d.getMonth() + 1)}-${p(d.getDate())}` +
    `T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  return micros === 0 ? base : `${base}.${p(micros, 6)}`;
}

export class MetadataError extends Error {}

function asInt(v: unknown, key: string): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) throw new MetadataError(`metadata: "${key}" is not a non-negative integer`);
  return v;
}

function asString(v: unknown, key: string): string {
  if (typeof v !== "string") throw new MetadataError(`metadata: "${key}" is not a string`);
  return v;
}

/**
 * Parses metadata JSON of any stream version (v1 `stream-version`, boolean `compressed`,
 * integer diff checkpoint names, `parentCheckpoint: false`, no `diskFormat`) into the
 * current shape. Throws MetadataError when a required key is missing or of the wrong type.
 */
export function parseMetadata(text: string): { meta: StreamMetadata; raw: Record<string, unknown> } {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new MetadataError(`invalid metadata JSON: ${(e as Error).message}`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new MetadataError("metadata is not a JSON object");
  const r = raw as Record<string, unknown>;
  const version = asInt(r["stream-version"] ?? r["streamVersion"], "streamVersion");
  const compressedRaw = r["compressed"] ?? false;
  if (compressedRaw !== false && compressedRaw !== true && (typeof compressedRaw !== "number" || !Number.isInteger(compressedRaw))) {
    throw new MetadataError(`metadata: "compressed" is neither false nor a level`);
  }
  const checkpoint = r["checkpointName"];
  const parent = r["parentCheckpoint"] ?? "";
  const meta: StreamMetadata = {
    virtualSize: asInt(r["virtualSize"], "virtualSize"),
    dataSize: asInt(r["dataSize"], "dataSize"),
    date: r["date"] === undefined ? "" : asString(r["date"], "date"),
    diskName: asString(r["diskName"], "diskName"),
    diskFormat: r["diskFormat"] === undefined ? "qcow2" : asString(r["diskFormat"], "diskFormat"),
    checkpointName: typeof checkpoint === "number" ? String(checkpoint) : asString(checkpoint ?? "", "checkpointName"),
    compressed: compressedRaw as false | number | true,
    compressionMethod: r["compressionMethod"] === undefined ? "lz4" : asString(r["compressionMethod"], "compressionMethod"),
    parentCheckpoint: parent === false ? "" : typeof parent === "number" ? String(parent) : asString(parent, "parentCheckpoint"),
    incremental: r["incremental"] === undefined ? false : r["incremental"] === true,
    streamVersion: version,
  };
  return { meta, raw: r };
}

/** The original's rule: compressed iff version 2 and `compressed` is not `false` (0 and true count). */
export function isCompressed(meta: StreamMetadata): boolean {
  return meta.streamVersion === 2 && meta.compressed !== false;
}
