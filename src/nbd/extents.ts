/**
 * Extent queries for backup (docs/behaviour.md, "Extent query").
 *
 * The disk is walked with BLOCK_STATUS requests of `min(remaining, 0xFFFFFFFF - align + 1)`
 * bytes (align = minimum block size, or 512). Each context's coverage is tracked separately;
 * the next request starts where the least advanced context ends, and replies for a context
 * that is already further are trimmed, so no context ever has gaps or overlaps. Per context,
 * adjacent entries with identical flags are merged (across request windows too).
 *
 * Everything is a generator over windows: memory stays bounded by one reply, whatever the
 * disk size. `collectBackupExtents` stores a result compactly (17 bytes per extent) with
 * the totals the stream metadata needs; `summarizeBackupExtents` computes only the totals.
 */
import type { NbdClient } from "./client.js";
import { NbdError, NbdProtocolError } from "./errors.js";
import { BASE_ALLOCATION, MAX_U32, STATE_DIRTY, STATE_HOLE } from "./protocol.js";

/** One status descriptor with its absolute offset. */
export interface RawExtent {
  offset: number;
  length: number;
  flags: number;
}

/** What a backup does with a range. */
export interface BackupExtent {
  offset: number;
  length: number;
  /** Read and store the range (true) or treat it as zero/unchanged (false). */
  data: boolean;
  /** Dirty in the bitmap (inc/diff), or null when no bitmap is involved (full/copy). */
  dirty: boolean | null;
}

export interface BackupExtentOptions {
  /** The dirty bitmap context (`qemu:dirty-bitmap:backup-sda`) for inc/diff; null/undefined for full/copy. */
  dirtyContext?: string | null;
  /** Intersect dirty ranges with allocated data (default true; upstream `--no-sparse-detection` = false). */
  sparseDetection?: boolean;
}

export interface WalkRange {
  /** Default 0. */
  start?: number;
  /** Default: export size. */
  end?: number;
}

/** What the extent walk needs from a client (an `NbdClient`, or a stand-in in tests). */
export type ExtentSource = Pick<NbdClient, "size" | "info" | "exportName" | "blockStatus">;

/** Meta contexts to negotiate for a backup of this kind (docs/behaviour.md, "NBD connection"). */
export function backupMetaContexts(opts: BackupExtentOptions): string[] {
  const primary = opts.dirtyContext ?? BASE_ALLOCATION;
  const out = opts.sparseDetection === false && opts.dirtyContext ? [] : [BASE_ALLOCATION];
  if (!out.includes(primary)) out.push(primary);
  return out;
}

function requireContexts(client: ExtentSource, names: readonly string[]): void {
  for (const n of names) {
    if (!client.info.metaContexts.has(n)) {
      throw new NbdError(`NBD server did not provide meta context [${n}] for export '${client.exportName}'`);
    }
  }
}

/**
 * Raw walk: for each BLOCK_STATUS reply, the new (not yet seen) extents of every context, in
 * the order of `contexts`, with absolute offsets. Not merged.
 */
export async function* walkBlockStatus(
  client: ExtentSource,
  contexts: readonly string[],
  range: WalkRange = {},
): AsyncGenerator<RawExtent[][]> {
  requireContexts(client, contexts);
  const start = range.start ?? 0;
  const end = Math.min(range.end ?? client.size, client.size);
  const align = client.info.minBlockSize > 1 ? client.info.minBlockSize : 512;
  const maxLen = MAX_U32 - align + 1;
  const cov = contexts.map(() => start);
  for (;;) {
    let offset = cov[0]!;
    for (const c of cov) if (c < offset) offset = c;
    if (offset >= end) return;
    const len = Math.min(end - offset, maxLen);
    const reply = await client.blockStatus(offset, len);
    const out: RawExtent[][] = [];
    for (let i = 0; i < contexts.length; i++) {
      const flat = reply.contexts.get(contexts[i]!);
      const arr: RawExtent[] = [];
      out.push(arr);
      if (!flat) {
        if (cov[i]! > offset) continue;
        throw new NbdProtocolError(`NBD server sent no block status for context [${contexts[i]}] at offset ${offset}`);
      }
      const c = cov[i]!;
      let pos = offset;
      for (let j = 0; j < flat.length; j += 2) {
        let s = pos;
        let e = pos + flat[j]!;
        pos = e;
        if (e <= c) continue;
        if (s < c) s = c;
        if (e > end) e = end;
        if (e > s) arr.push({ offset: s, length: e - s, flags: flat[j + 1]! });
        if (pos >= end) break;
      }
      if (pos > c) cov[i] = Math.min(pos, end);
    }
    let next = cov[0]!;
    for (const c of cov) if (c < next) next = c;
    if (next <= offset) throw new NbdProtocolError(`NBD block status made no progress at offset ${offset}`);
    yield out;
  }
}

/** Merges adjacent extents with identical flags; `push` returns finished extents into `out`. */
export class ExtentMerger {
  private pending: RawExtent | null = null;

  push(e: RawExtent, out: RawExtent[]): void {
    const p = this.pending;
    if (p && p.flags === e.flags && p.offset + p.length === e.offset) {
      p.length += e.length;
      return;
    }
    if (p) out.push(p);
    this.pending = { offset: e.offset, length: e.length, flags: e.flags };
  }

  flush(out: RawExtent[]): void {
    if (this.pending) out.push(this.pending);
    this.pending = null;
  }
}

/** One context's extents over the export (merged unless `merge: false`). */
export async function* contextExtents(
  client: ExtentSource,
  context: string,
  opts: WalkRange & { merge?: boolean } = {},
): AsyncGenerator<RawExtent> {
  const merge = opts.merge ?? true;
  const m = new ExtentMerger();
  const out: RawExtent[] = [];
  for await (const [exts] of walkBlockStatus(client, [context], opts)) {
    if (!merge) {
      yield* exts!;
      continue;
    }
    for (const e of exts!) m.push(e, out);
    yield* out;
    out.length = 0;
  }
  m.flush(out);
  yield* out;
}

const isData = (flags: number): boolean => (flags & STATE_HOLE) === 0;
const isDirty = (flags: number): boolean => flags === STATE_DIRTY;

/**
 * The extents a backup transfers, in order (docs/behaviour.md, "Extent query"):
 * * full/copy: all merged base:allocation extents (data ⇔ HOLE clear), covering the disk;
 * * inc/diff with sparse detection: the pieces of dirty ranges that are allocated data,
 *   one piece per (dirty extent × data extent) overlap, not merged; all `data: true`;
 * * inc/diff without: the merged bitmap extents (data ⇔ dirty), covering the disk.
 */
export async function* backupExtents(
  client: ExtentSource,
  opts: BackupExtentOptions & WalkRange = {},
): AsyncGenerator<BackupExtent> {
  const dirtyCtx = opts.dirtyContext ?? null;
  if (dirtyCtx === null) {
    for await (const e of contextExtents(client, BASE_ALLOCATION, opts)) {
      yield { offset: e.offset, length: e.length, data: isData(e.flags), dirty: null };
    }
    return;
  }
  if (opts.sparseDetection === false) {
    for await (const e of contextExtents(client, dirtyCtx, opts)) {
      const d = isDirty(e.flags);
      yield { offset: e.offset, length: e.length, data: d, dirty: d };
    }
    return;
  }
  // Two-pointer sweep over finished (merged) dirty extents and data extents.
  const mb = new ExtentMerger();
  const md = new ExtentMerger();
  const bq: RawExtent[] = [];
  const dq: RawExtent[] = [];
  let bi = 0;
  let di = 0;
  const tmp: RawExtent[] = [];
  const feed = (m: ExtentMerger, exts: RawExtent[] | null, q: RawExtent[], keep: (f: number) => boolean): void => {
    if (exts) for (const e of exts) m.push(e, tmp);
    else m.flush(tmp);
    for (const e of tmp) if (keep(e.flags)) q.push(e);
    tmp.length = 0;
  };
  const sweep = function* (): Generator<BackupExtent> {
    while (bi < bq.length && di < dq.length) {
      const b = bq[bi]!;
      const d = dq[di]!;
      const be = b.offset + b.length;
      const de = d.offset + d.length;
      const s = Math.max(b.offset, d.offset);
      const e = Math.min(be, de);
      if (s < e) yield { offset: s, length: e - s, data: true, dirty: true };
      if (de < be) di++;
      else bi++;
    }
    if (bi > 4096) {
      bq.splice(0, bi);
      bi = 0;
    }
    if (di > 4096) {
      dq.splice(0, di);
      di = 0;
    }
  };
  for await (const [base, dirty] of walkBlockStatus(client, [BASE_ALLOCATION, dirtyCtx], opts)) {
    feed(mb, base!, bq, isData);
    feed(md, dirty!, dq, isDirty);
    yield* sweep();
  }
  feed(mb, null, bq, isData);
  feed(md, null, dq, isDirty);
  yield* sweep();
}

export interface ExtentTotals {
  /** Number of extents (non-data ones included, like upstream's "Got N extents"). */
  count: number;
  /** Bytes in data extents. */
  dataBytes: number;
  /** Bytes in non-data extents. */
  zeroBytes: number;
}

const K_DATA = 1;
const K_DIRTY = 2;
const K_DIRTY_KNOWN = 4;

/** A compact, append-only extent list (17 bytes per extent) with running totals. */
export class ExtentList implements Iterable<BackupExtent>, ExtentTotals {
  private offsets = new Float64Array(256);
  private lengths = new Float64Array(256);
  private kinds = new Uint8Array(256);
  count = 0;
  dataBytes = 0;
  zeroBytes = 0;

  push(e: BackupExtent): void {
    if (this.count === this.offsets.length) {
      const n = this.count * 2;
      const o = new Float64Array(n);
      o.set(this.offsets);
      const l = new Float64Array(n);
      l.set(this.lengths);
      const k = new Uint8Array(n);
      k.set(this.kinds);
      this.offsets = o;
      this.lengths = l;
      this.kinds = k;
    }
    const i = this.count++;
    this.offsets[i] = e.offset;
    this.lengths[i] = e.length;
    this.kinds[i] = (e.data ? K_DATA : 0) | (e.dirty === null ? 0 : K_DIRTY_KNOWN | (e.dirty ? K_DIRTY : 0));
    if (e.data) this.dataBytes += e.length;
    else this.zeroBytes += e.length;
  }

  get length(): number {
    return this.count;
  }

  get(i: number): BackupExtent {
    if (i < 0 || i >= this.count) throw new RangeError(`extent index ${i} out of range`);
    const k = this.kinds[i]!;
    return {
      offset: this.offsets[i]!,
      length: this.lengths[i]!,
      data: (k & K_DATA) !== 0,
      dirty: k & K_DIRTY_KNOWN ? (k & K_DIRTY) !== 0 : null,
    };
  }

  *[Symbol.iterator](): Iterator<BackupExtent> {
    for (let i = 0; i < this.count; i++) yield this.get(i);
  }

  toArray(): BackupExtent[] {
    return [...this];
  }
}

/** All backup extents in one compact list, with totals. */
export async function collectBackupExtents(client: ExtentSource, opts: BackupExtentOptions & WalkRange = {}): Promise<ExtentList> {
  const list = new ExtentList();
  for await (const e of backupExtents(client, opts)) list.push(e);
  return list;
}

/** Totals only (one pass, constant memory); iterate `backupExtents` again for the data. */
export async function summarizeBackupExtents(
  client: ExtentSource,
  opts: BackupExtentOptions & WalkRange = {},
): Promise<ExtentTotals> {
  const t: ExtentTotals = { count: 0, dataBytes: 0, zeroBytes: 0 };
  for await (const e of backupExtents(client, opts)) {
    t.count++;
    if (e.data) t.dataBytes += e.length;
    else t.zeroBytes += e.length;
  }
  return t;
}
