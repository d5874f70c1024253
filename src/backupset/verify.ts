/**
 * `virtnbdrestore -o verify`: the original compares each file's Adler-32 with its `.chksum`.
 * We also decode every stream (frame order and bounds, lz4 checksums, data size), so damage
 * is found in sets without `.chksum` files (1.9.15 sets, zip archives) too.
 */
import { adler32Range } from "../format/checksum.js";
import { StreamReader } from "../format/reader.js";
import type { BackupSetSource, SetFile } from "../storage/set-source.js";
import { BufferPool } from "../util/buffer-pool.js";
import { loadIntegrity } from "./integrity.js";
import { isRawImage } from "./raw-image.js";
import { buildChain, ChainError, checkChainAgainstCpt, checkpointXmlNames, type ChainFile } from "./chain-order.js";
import { parseCpt } from "./cpt.js";
import { checksumFileName, isCptFileName, parseDataFileName } from "./layout.js";
import type { EventStream } from "../report/events.js";

export interface VerifyLog {
  info(message: string): void;
  error(message: string): void;
}

export interface VerifyOptions {
  /** `-B/--buffsize`: read size for the checksum (the result does not depend on it). */
  bufferSize: number;
  /** Also check that each disk's files form a complete chain (not for an explicit `--sequence`). */
  chains?: boolean;
  /** `disk-start`/`disk-done` per data file checked, with the Adler-32 computed (docs/events.md). */
  events?: Pick<EventStream, "disk">;
}

function displayName(set: BackupSetSource, file: SetFile): string {
  return set.shownName(file.name);
}

async function adler32Of(set: BackupSetSource, file: SetFile, bufferSize: number): Promise<{ checksum: number; size: number }> {
  const source = await set.open(file.name);
  try {
    const checksum = await adler32Range(source, 0, source.size, 1, Buffer.allocUnsafe(Math.max(1, Math.min(bufferSize, 64 << 20))));
    return { checksum, size: source.size };
  } finally {
    await source.close();
  }
}

/**
 * Reads the whole stream as restore would, without writing anywhere. `payloads: false` walks
 * frame headers, metadata and the integrity record's frame list only: for a caller that checks
 * every byte of the file against its `.chksum` in the same run (one read of the data instead
 * of two).
 */
/** What `checkStream` found and checked: `integrity` says how far the `.integrity` record was compared. */
export type StreamCheck =
  | { kind: "raw" }
  | { kind: "stream"; frames: number; integrity: "none" | "frames" | "frames and data"; lz4Checksums: boolean };

export async function checkStream(set: BackupSetSource, name: string, pool: BufferPool, options: { payloads?: boolean } = {}): Promise<StreamCheck> {
  const payloads = options.payloads ?? true;
  const source = await set.open(name);
  try {
    if (await isRawImage(source)) return { kind: "raw" };
    const reader = await StreamReader.open(source);
    const integrityData = !reader.compressed && payloads;
    const check = await loadIntegrity(set, name, !integrityData);
    check?.meta(reader.metaBytes);
    let frames = 0;
    for await (const frame of reader.frames()) {
      frames++;
      check?.frame(frame.kind, frame.start, frame.length);
      // Without a record, raw payload bytes carry no checksum: only headers are checked.
      if (frame.kind !== "data" || !payloads || (!reader.compressed && !check)) continue;
      for await (const piece of reader.pieces(frame, pool)) {
        check?.data(piece.data);
        if (piece.buffer) pool.release(piece.buffer);
      }
      check?.endData();
    }
    check?.end();
    const integrity = !check ? "none" : integrityData ? "frames and data" : "frames";
    return { kind: "stream", frames, integrity, lz4Checksums: reader.compressed && payloads };
  } finally {
    await source.close();
  }
}

/** What the stream check of one file looked at, as one INFO line (it passed). */
export function streamCheckLine(shown: string, result: StreamCheck): string {
  if (result.kind === "raw") return `Raw image, no stream to check: [${shown}]`;
  const checked = ["frame headers and bounds"];
  if (result.integrity !== "none") checked.push(`integrity record (metadata, ${result.integrity})`);
  if (result.lz4Checksums) checked.push("lz4 checksums");
  return `Stream check passed: [${shown}]: ${result.frames} frames; checked: ${checked.join(", ")}`;
}

/** Returns true when every file is sound; each problem is logged as one ERROR line. */
export async function verifySet(set: BackupSetSource, files: SetFile[], options: VerifyOptions, log: VerifyLog): Promise<boolean> {
  const stored = new Map((await set.list()).map((f) => [f.name, f]));
  const pool = BufferPool.fixed(32 << 20, 1);
  let ok = true;
  for (const file of files) {
    const shown = displayName(set, file);
    log.info(`Computing checksum for: ${shown}`);
    const base = file.name.slice(file.name.lastIndexOf("/") + 1);
    const events = options.events?.disk({ disk: parseDataFileName(base)?.disk ?? base, source: [shown] });
    let computed: number;
    try {
      const read = await adler32Of(set, file, options.bufferSize);
      computed = read.checksum;
      events?.done({ bytes: read.size, checksum: computed });
    } catch (e) {
      log.error(`Unable to read [${shown}]: ${(e as Error).message}`);
      ok = false;
      continue;
    }
    log.info(`Checksum result: ${computed}`);
    const chksumName = checksumFileName(file.name);
    if (!stored.has(chksumName)) {
      log.info(`No checksum found, skipping: [${shown}]`);
    } else {
      const text = (await set.readFile(chksumName)).toString("latin1").trim();
      if (text !== String(computed)) {
        log.error(`Stored sums do not match for [${shown}]: [${text}]!=[${computed}]`);
        ok = false;
        continue;
      }
      log.info("OK");
    }
    try {
      log.info(streamCheckLine(shown, await checkStream(set, file.name, pool)));
    } catch (e) {
      log.error(`Stream check failed: ${(e as Error).message}`);
      ok = false;
    }
  }
  if (options.chains !== false && !(await verifyChains(set, files, log))) ok = false;
  return ok;
}

/**
 * Each disk's stream files must form one chain by their checkpoint links (no gap, duplicate or
 * stray), and every checkpoint of the set's `.cpt` list and `checkpoints/` XMLs must have its file.
 */
async function verifyChains(set: BackupSetSource, files: SetFile[], log: VerifyLog): Promise<boolean> {
  const byDisk = new Map<string, ChainFile[]>();
  for (const f of files) {
    const source = await set.open(f.name);
    try {
      const reader = await StreamReader.open(source, { trailer: false });
      const list = byDisk.get(reader.meta.diskName) ?? [];
      list.push({ name: f.name, meta: reader.meta, mtimeMs: f.mtimeMs });
      byDisk.set(reader.meta.diskName, list);
    } catch {
      // unreadable or raw: reported by the file checks above
    } finally {
      await source.close();
    }
  }
  const listing = await set.list();
  const cpts = listing.filter((f) => !f.name.includes("/") && isCptFileName(f.name));
  let cpt: string[] = [];
  if (cpts.length === 1) {
    try {
      cpt = parseCpt((await set.readFile(cpts[0]!.name)).toString("utf8"), cpts[0]!.name);
    } catch (e) {
      log.error((e as Error).message);
      return false;
    }
  }
  let ok = true;
  for (const [disk, chainFiles] of byDisk) {
    try {
      checkChainAgainstCpt(disk, buildChain(disk, chainFiles), cpt, undefined, checkpointXmlNames(listing));
      log.info(`Backup chain of disk [${disk}]: ${chainFiles.length} file(s), complete.`);
    } catch (e) {
      if (!(e instanceof ChainError)) throw e;
      log.error(`Backup chain of disk [${disk}] is broken: ${e.message}`);
      ok = false;
    }
  }
  return ok;
}
