/** Extent query logic (docs/behaviour.md, "Extent query") against a scripted block status source. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  backupExtents,
  backupMetaContexts,
  collectBackupExtents,
  contextExtents,
  summarizeBackupExtents,
  type BackupExtent,
  type ExtentSource,
  type RawExtent,
} from "../../src/nbd/extents.js";
import { BASE_ALLOCATION } from "../../src/nbd/protocol.js";

const DIRTY = "qemu:dirty-bitmap:backup-sda";
const KiB = 1024;
const GiB = 1024 ** 3;

/** Layout: [length, flags] runs from offset 0 (may have equal neighbours, like a real server). */
type Layout = [number, number][];

interface FakeOptions {
  size: number;
  layouts: Record<string, Layout>;
  /** Descriptors per reply and context (default unlimited). */
  maxPerReply?: Record<string, number>;
  minBlockSize?: number;
}

function fake(o: FakeOptions): ExtentSource & { requests: [number, number][] } {
  const requests: [number, number][] = [];
  const names = Object.keys(o.layouts);
  return {
    requests,
    size: o.size,
    exportName: "sda",
    info: { minBlockSize: o.minBlockSize ?? 1, metaContexts: new Map(names.map((n, i) => [n, i])) } as ExtentSource["info"],
    async blockStatus(offset: number, length: number) {
      requests.push([offset, length]);
      const contexts = new Map<string, number[]>();
      for (const n of names) {
        const flat: number[] = [];
        let pos = 0;
        const limit = o.maxPerReply?.[n] ?? Infinity;
        for (const [len, flags] of o.layouts[n]!) {
          const s = Math.max(pos, offset);
          const e = Math.min(pos + len, offset + length);
          pos += len;
          if (e > s) flat.push(e - s, flags);
          if (flat.length / 2 >= limit || pos >= offset + length) break;
        }
        contexts.set(n, flat);
      }
      return { offset, contexts };
    },
  };
}

async function all<T>(g: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of g) out.push(x);
  return out;
}

/** Reference: whole-disk merge per context, then the documented classification. */
function reference(layouts: Record<string, Layout>, dirty: string | null, sparse: boolean): BackupExtent[] {
  const merged = (l: Layout): RawExtent[] => {
    const out: RawExtent[] = [];
    let pos = 0;
    for (const [len, flags] of l) {
      const last = out.at(-1);
      if (last && last.flags === flags) last.length += len;
      else out.push({ offset: pos, length: len, flags });
      pos += len;
    }
    return out;
  };
  if (!dirty) return merged(layouts[BASE_ALLOCATION]!).map((e) => ({ offset: e.offset, length: e.length, data: (e.flags & 1) === 0, dirty: null }));
  const d = merged(layouts[dirty]!);
  if (!sparse) return d.map((e) => ({ offset: e.offset, length: e.length, data: e.flags === 1, dirty: e.flags === 1 }));
  const base = merged(layouts[BASE_ALLOCATION]!).filter((e) => (e.flags & 1) === 0);
  const dd = d.filter((e) => e.flags === 1);
  const out: BackupExtent[] = [];
  let i = 0;
  let j = 0;
  while (i < dd.length && j < base.length) {
    const a = dd[i]!;
    const b = base[j]!;
    const s = Math.max(a.offset, b.offset);
    const e = Math.min(a.offset + a.length, b.offset + b.length);
    if (s < e) out.push({ offset: s, length: e - s, data: true, dirty: true });
    if (a.offset + a.length < b.offset + b.length) i++;
    else j++;
  }
  return out;
}

describe("nbd extents", () => {
  it("chooses meta contexts like upstream", () => {
    assert.deepEqual(backupMetaContexts({}), [BASE_ALLOCATION]);
    assert.deepEqual(backupMetaContexts({ sparseDetection: false }), [BASE_ALLOCATION]);
    assert.deepEqual(backupMetaContexts({ dirtyContext: DIRTY }), [BASE_ALLOCATION, DIRTY]);
    assert.deepEqual(backupMetaContexts({ dirtyContext: DIRTY, sparseDetection: false }), [DIRTY]);
  });

  it("full: merged base extents, flags 0 and 2 kept apart, covering the disk", async () => {
    const layouts = {
      [BASE_ALLOCATION]: [
        [64 * KiB, 0],
        [64 * KiB, 0],
        [64 * KiB, 2],
        [128 * KiB, 3],
        [64 * KiB, 1],
        [192 * KiB, 0],
      ] as Layout,
    };
    const src = fake({ size: 576 * KiB, layouts, maxPerReply: { [BASE_ALLOCATION]: 2 } });
    const got = await all(backupExtents(src));
    assert.deepEqual(got, [
      { offset: 0, length: 128 * KiB, data: true, dirty: null },
      { offset: 128 * KiB, length: 64 * KiB, data: true, dirty: null },
      { offset: 192 * KiB, length: 128 * KiB, data: false, dirty: null },
      { offset: 320 * KiB, length: 64 * KiB, data: false, dirty: null },
      { offset: 384 * KiB, length: 192 * KiB, data: true, dirty: null },
    ]);
    assert.deepEqual(src.requests.map((r) => r[0]), [0, 128 * KiB, 320 * KiB]);
  });

  it("requests min(remaining, 0xFFFFFFFF - align + 1) bytes and merges across windows", async () => {
    const size = 10 * GiB;
    const src = fake({ size, layouts: { [BASE_ALLOCATION]: [[size, 3]] } });
    assert.deepEqual(await all(backupExtents(src)), [{ offset: 0, length: size, data: false, dirty: null }]);
    const L = 0xffffffff - 512 + 1;
    assert.deepEqual(src.requests, [
      [0, L],
      [L, L],
      [2 * L, size - 2 * L],
    ]);
    const src4k = fake({ size, minBlockSize: 4096, layouts: { [BASE_ALLOCATION]: [[size, 0]] } });
    await all(backupExtents(src4k));
    assert.equal(src4k.requests[0]![1], 0xffffffff - 4096 + 1);
  });

  it("inc with sparse detection: dirty ∩ data pieces, unmerged, holes left out", async () => {
    const layouts = {
      [BASE_ALLOCATION]: [
        [4 * KiB, 0],
        [4 * KiB, 2],
        [8 * KiB, 3],
        [16 * KiB, 0],
      ] as Layout,
      [DIRTY]: [
        [2 * KiB, 0],
        [12 * KiB, 1],
        [6 * KiB, 0],
        [4 * KiB, 1],
        [4 * KiB, 1],
        [4 * KiB, 0],
      ] as Layout,
    };
    const src = fake({ size: 32 * KiB, layouts });
    const got = await all(backupExtents(src, { dirtyContext: DIRTY }));
    assert.deepEqual(got, [
      { offset: 2 * KiB, length: 2 * KiB, data: true, dirty: true },
      { offset: 4 * KiB, length: 4 * KiB, data: true, dirty: true },
      { offset: 20 * KiB, length: 8 * KiB, data: true, dirty: true },
    ]);
    assert.deepEqual(got, reference(layouts, DIRTY, true));
  });

  it("inc without sparse detection: merged bitmap extents, data ⇔ dirty", async () => {
    const layouts = { [DIRTY]: [[4 * KiB, 0], [4 * KiB, 1], [4 * KiB, 1], [4 * KiB, 0]] as Layout };
    const src = fake({ size: 16 * KiB, layouts });
    assert.deepEqual(await all(backupExtents(src, { dirtyContext: DIRTY, sparseDetection: false })), [
      { offset: 0, length: 4 * KiB, data: false, dirty: false },
      { offset: 4 * KiB, length: 8 * KiB, data: true, dirty: true },
      { offset: 12 * KiB, length: 4 * KiB, data: false, dirty: false },
    ]);
  });

  it("matches the whole-disk reference for random layouts and uneven coverage per context", async () => {
    let seed = 12345;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let round = 0; round < 200; round++) {
      const size = (1 + rnd(64)) * 4 * KiB;
      const mk = (flags: number[]): Layout => {
        const l: Layout = [];
        let pos = 0;
        while (pos < size) {
          const len = Math.min(size - pos, (1 + rnd(6)) * 2 * KiB);
          l.push([len, flags[rnd(flags.length)]!]);
          pos += len;
        }
        return l;
      };
      const layouts = { [BASE_ALLOCATION]: mk([0, 1, 2, 3]), [DIRTY]: mk([0, 1]) };
      const maxPerReply = { [BASE_ALLOCATION]: 1 + rnd(4), [DIRTY]: 1 + rnd(4) };
      for (const [dirty, sparse] of [
        [null, true],
        [DIRTY, true],
        [DIRTY, false],
      ] as const) {
        const src = fake({ size, layouts, maxPerReply });
        const got = await all(backupExtents(src, { dirtyContext: dirty, sparseDetection: sparse }));
        assert.deepEqual(got, reference(layouts, dirty, sparse), `round ${round} ${dirty} ${sparse}`);
      }
    }
  });

  it("exposes raw per-context extents, merged or as reported", async () => {
    const layouts = { [BASE_ALLOCATION]: [[4096, 0], [4096, 0], [4096, 3]] as Layout, [DIRTY]: [[12288, 1]] as Layout };
    const src = fake({ size: 12288, layouts });
    assert.deepEqual(await all(contextExtents(src, BASE_ALLOCATION)), [
      { offset: 0, length: 8192, flags: 0 },
      { offset: 8192, length: 4096, flags: 3 },
    ]);
    assert.deepEqual(await all(contextExtents(src, BASE_ALLOCATION, { merge: false })), [
      { offset: 0, length: 4096, flags: 0 },
      { offset: 4096, length: 4096, flags: 0 },
      { offset: 8192, length: 4096, flags: 3 },
    ]);
    assert.deepEqual(await all(contextExtents(src, DIRTY, { start: 4096, end: 8192 })), [{ offset: 4096, length: 4096, flags: 1 }]);
  });

  it("collects compactly with totals, and summarizes without storing", async () => {
    const layouts = { [BASE_ALLOCATION]: [[4096, 0], [8192, 3], [4096, 2]] as Layout };
    const src = fake({ size: 16384, layouts });
    const list = await collectBackupExtents(src);
    assert.equal(list.count, 3);
    assert.equal(list.dataBytes, 8192);
    assert.equal(list.zeroBytes, 8192);
    assert.deepEqual(list.toArray(), await all(backupExtents(src)));
    assert.deepEqual(list.get(1), { offset: 4096, length: 8192, data: false, dirty: null });
    assert.deepEqual(await summarizeBackupExtents(src), { count: 3, dataBytes: 8192, zeroBytes: 8192 });
    const big = new (list.constructor as new () => typeof list)();
    for (let i = 0; i < 1000; i++) big.push({ offset: i, length: 1, data: i % 2 === 0, dirty: i % 3 === 0 });
    assert.equal(big.count, 1000);
    assert.deepEqual(big.get(999), { offset: 999, length: 1, data: false, dirty: true });
  });

  it("walks lazily: a huge fragmented disk costs only what is consumed", async () => {
    const size = 2 ** 50; // 1 PiB
    const src = fake({ size, layouts: { [BASE_ALLOCATION]: [] }, maxPerReply: { [BASE_ALLOCATION]: 4 } });
    // Alternating 64 KiB extents, generated on demand.
    src.blockStatus = async (offset: number, length: number) => {
      src.requests.push([offset, length]);
      const flat: number[] = [];
      let pos = offset;
      for (let i = 0; i < 4; i++) {
        const next = (Math.floor(pos / 65536) + 1) * 65536;
        flat.push(next - pos, Math.floor(pos / 65536) % 2 ? 3 : 0);
        pos = next;
      }
      return { offset, contexts: new Map([[BASE_ALLOCATION, flat]]) };
    };
    let n = 0;
    for await (const e of backupExtents(src)) {
      assert.equal(e.length, 65536);
      if (++n === 10) break;
    }
    assert.ok(src.requests.length <= 4, `${src.requests.length} requests`);
  });

  it("names a missing context", async () => {
    const src = fake({ size: 4096, layouts: { [BASE_ALLOCATION]: [[4096, 0]] } });
    await assert.rejects(all(backupExtents(src, { dirtyContext: DIRTY })), /did not provide meta context \[qemu:dirty-bitmap:backup-sda\] for export 'sda'/);
  });
});
