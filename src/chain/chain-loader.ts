/**
 * Opens the files of a `-f` list, checks that they form one chain in the given order, and
 * merges their frames into one ChainIndex (no replay: the index already shows every byte
 * at the chain's last point in time).
 */
import { buildChain, ChainError, type ChainFile } from "../backupset/chain-order.js";
import { dataFileName, parseDataFileName } from "../backupset/layout.js";
import { lz4ContentSize, lz4Decompress } from "../format/lz4.js";
import type { StreamMetadata } from "../format/metadata.js";
import { MAX_LZ4_PIECE, StreamReader } from "../format/reader.js";
import { readExactly, type RandomAccessSource } from "../format/source.js";
import { ChainIndexBuilder, HOLE, Layer, type ChainIndex } from "./chain-index.js";
import { resolveMapFile, type ResolvedFile } from "./chain-files.js";
import type { BackupSetSource } from "../storage/set-source.js";

export class ChainLoadError extends Error {}

export interface ChainMember {
  given: string;
  name: string;
  meta: StreamMetadata;
  compressed: boolean;
  source: RandomAccessSource;
  /** Data and zero frames of this file. */
  frames: number;
}

export interface MappedChain {
  index: ChainIndex;
  members: ChainMember[];
  /** Sources by file index (as the index's pieceFile refers to them). */
  sources: RandomAccessSource[];
  close(): Promise<void>;
}

export interface LoadOptions {
  /** Called after each file is indexed. */
  onFile?: (member: ChainMember) => void;
}

/**
 * Checks the order of a `-f` list: the first file must be a full (or copy) backup, all files
 * must belong to one disk, and the list must be the chain order that the checkpoint links
 * give (backupset/chain-order.ts), so a misordered or gapped list is refused naming the problem.
 */
export function checkChainOrder(files: { name: string; given: string; meta: StreamMetadata }[]): void {
  const first = files[0];
  if (!first) throw new ChainLoadError("No files given.");
  if (first.meta.incremental) throw new ChainLoadError("Sequence must start with a full backup");
  for (const f of files.slice(1)) {
    if (f.meta.diskName !== first.meta.diskName) {
      throw new ChainLoadError(
        `File [${f.given}] is a backup of disk [${f.meta.diskName}], [${first.given}] of disk [${first.meta.diskName}].`,
      );
    }
  }
  if (files.length === 1) return;
  // Chain roles come from file names; streams under other names get the name their metadata implies.
  const chainFiles: (ChainFile & { given: string })[] = files.map((f, i) => ({
    name: parseDataFileName(f.name) ? f.name : syntheticName(f.meta, i),
    meta: f.meta,
    mtimeMs: i,
    given: f.given,
  }));
  const seen = new Set<string>();
  for (const f of chainFiles) {
    if (seen.has(f.name)) throw new ChainLoadError(`File [${f.given}] is given twice (or two files hold the same backup).`);
    seen.add(f.name);
  }
  let ordered: ChainFile[];
  try {
    ordered = buildChain(first.meta.diskName, chainFiles);
  } catch (e) {
    if (e instanceof ChainError) throw new ChainLoadError(`Files do not form a backup chain: ${e.message}`);
    throw e;
  }
  const givenOrder = chainFiles.map((f) => f.name);
  if (ordered.some((f, i) => f.name !== givenOrder[i])) {
    const byName = new Map(chainFiles.map((f) => [f.name, f.given]));
    throw new ChainLoadError(
      `Files are not given in chain order (by checkpoint links the order is: ${ordered.map((f) => byName.get(f.name)).join(",")}).`,
    );
  }
}

function syntheticName(meta: StreamMetadata, i: number): string {
  if (i === 0 && !meta.incremental) return dataFileName(meta.diskName, "full", "");
  if (meta.incremental && meta.parentCheckpoint === meta.checkpointName) return dataFileName(meta.diskName, "diff", String(i));
  return dataFileName(meta.diskName, "inc", meta.checkpointName || String(i));
}

/** Decoded length of the lz4 frame at `pos` (from its header, or by decoding it). */
async function lz4FrameLength(source: RandomAccessSource, pos: number, size: number, remaining: number, last: boolean): Promise<number> {
  const head = Buffer.alloc(Math.min(size, 14));
  await readExactly(source, head, 0, head.length, pos);
  const n = lz4ContentSize(head);
  if (n !== null) return n;
  if (last) return remaining;
  const input = Buffer.allocUnsafe(size);
  await readExactly(source, input, 0, size, pos);
  return lz4Decompress(input, Buffer.allocUnsafe(Math.min(remaining, MAX_LZ4_PIECE)));
}

async function indexFile(builder: ChainIndexBuilder, fileNo: number, reader: StreamReader): Promise<number> {
  const meta = reader.meta;
  const layer = new Layer(meta.virtualSize, !meta.incremental);
  let frames = 0;
  for await (const f of reader.frames()) {
    frames++;
    if (f.kind === "zero") {
      // inc/diff streams have no zero frames; should one appear it is not a change
      if (!meta.incremental) layer.add(f.start, f.length, HOLE);
      continue;
    }
    const entry = reader.trailer?.[f.index];
    if (entry === undefined) {
      layer.add(f.start, f.length, builder.addPiece({ file: fileNo, diskStart: f.start, length: f.length, pos: f.payload, csize: -1 }));
    } else if (typeof entry === "number") {
      layer.add(f.start, f.length, builder.addPiece({ file: fileNo, diskStart: f.start, length: f.length, pos: f.payload, csize: entry }));
    } else {
      let pos = f.payload;
      let done = 0;
      for (let k = 0; k < entry.length; k++) {
        const size = entry[k]!;
        const remaining = f.length - done;
        const n = await lz4FrameLength(reader.source, pos, size, remaining, k === entry.length - 1);
        if (n <= 0 || n > remaining) {
          throw new ChainLoadError(`${reader.name}: at byte ${pos}: lz4 frame of ${n} bytes does not fit the data frame at disk offset ${f.start}`);
        }
        layer.add(f.start + done, n, builder.addPiece({ file: fileNo, diskStart: f.start + done, length: n, pos, csize: size }));
        done += n;
        pos += size;
      }
      if (done !== f.length) {
        throw new ChainLoadError(`${reader.name}: at byte ${f.payload}: data frame at disk offset ${f.start} decodes to ${done} of ${f.length} bytes`);
      }
    }
  }
  builder.apply(layer);
  return frames;
}

/** Merges already opened streams, in chain order, into one index (file numbers = positions). */
export async function indexReaders(readers: StreamReader[]): Promise<ChainIndex> {
  const builder = new ChainIndexBuilder();
  for (let i = 0; i < readers.length; i++) await indexFile(builder, i, readers[i]!);
  return builder.finish();
}

/** Opens, checks and indexes the files; on failure everything opened is closed again. */
export async function loadChain(items: string[], opts: LoadOptions = {}): Promise<MappedChain> {
  const opened: ResolvedFile[] = [];
  const closeAll = async () => {
    for (const f of opened) await f.close().catch(() => undefined);
  };
  try {
    const readers: StreamReader[] = [];
    for (const item of items) {
      const file = await resolveMapFile(item);
      opened.push(file);
      readers.push(await StreamReader.open(file.source));
    }
    checkChainOrder(opened.map((f, i) => ({ name: f.name, given: f.given, meta: readers[i]!.meta })));
    const builder = new ChainIndexBuilder();
    const members: ChainMember[] = [];
    for (let i = 0; i < readers.length; i++) {
      const r = readers[i]!;
      const frames = await indexFile(builder, i, r);
      const member: ChainMember = {
        given: opened[i]!.given,
        name: opened[i]!.name,
        meta: r.meta,
        compressed: r.compressed,
        source: r.source,
        frames,
      };
      members.push(member);
      opts.onFile?.(member);
    }
    return { index: builder.finish(), members, sources: opened.map((f) => f.source), close: closeAll };
  } catch (e) {
    await closeAll();
    throw e;
  }
}

/**
 * A chain of a backup set whose order the caller already checked (restore's diskChain): its
 * files opened from the set (directory or zip archives) and indexed. The set stays the caller's;
 * `close` closes only the files opened here.
 */
export async function loadSetChain(set: BackupSetSource, names: readonly string[], opts: LoadOptions = {}): Promise<MappedChain> {
  const sources: RandomAccessSource[] = [];
  const closeAll = async () => {
    for (const s of sources) await s.close().catch(() => undefined);
  };
  try {
    const builder = new ChainIndexBuilder();
    const members: ChainMember[] = [];
    for (const [i, name] of names.entries()) {
      const source = await set.open(name);
      sources.push(source);
      const reader = await StreamReader.open(source);
      const member: ChainMember = { given: set.shownName(name), name, meta: reader.meta, compressed: reader.compressed, source, frames: await indexFile(builder, i, reader) };
      members.push(member);
      opts.onFile?.(member);
    }
    return { index: builder.finish(), members, sources, close: closeAll };
  } catch (e) {
    await closeAll();
    throw e;
  }
}
