/**
 * qemu-img reads uncompressed stream files itself: `qemu-img convert` concatenates its source
 * images, so the merged chain index becomes one source per range — a `raw` view (byte offset
 * and size) into the stream file that holds the range, or a `null-co` that reads zeroes for a
 * hole (skipped on a zeroed target, so the image stays thin). No NBD hop, no copy through our
 * process: qemu reads the page cache with its own I/O threads.
 *
 *   directSources(index, ["/set/sda.full.data", "/set/sda.inc.virtnbdbackup.1.data"])
 *   // → ['json:{"driver":"raw","offset":40,"size":1048576,"file":{"driver":"file",…,"node-name":"f0"}}',
 *   //    'json:{"driver":"null-co","size":3145728,"read-zeroes":true}', …]  or null
 *
 * A file node is shared by up to CHILDREN_PER_NODE ranges, then the file is opened again under
 * a new node name: qemu walks a node's parents on every request, so one node under all ~1000
 * ranges of a fragmented full cost qemu-img 3.4 s of CPU for 2.7 GiB (0.2 s with 32 per node,
 * 2026-12-05). Null when
 * the chain does not fit: a compressed piece, a file that is not a plain local file, a range
 * that is not a multiple of 512 bytes (qemu's raw driver needs that), or more than
 * MAX_RANGES ranges; the caller then serves the chain over NBD.
 */
import { HOLE, type ChainIndex } from "../chain/chain-index.js";

/** Command-line budget: far below the kernel's argument limit (ARG_MAX, 2 MiB by default). */
const MAX_ARG_BYTES = 512 * 1024;

/**
 * Ranges (sources of qemu-img) at most. qemu-img holds ~27 KiB per source: a full and 30 incs
 * of 64 scattered MiB each (2600 ranges) made it peak at 96 MiB, more than this process, and it
 * copied 3× slower than from our NBD server (2026-12-05). A full of 2 GiB has ~200.
 */
export const MAX_RANGES = 1024;
const SECTOR = 512;
export const CHILDREN_PER_NODE = 32;

export function directSources(index: ChainIndex, paths: readonly (string | null)[]): string[] | null {
  const uses = new Map<number, number>();
  const args: string[] = [];
  let bytes = 0;
  const push = (spec: object): boolean => {
    const a = `json:${JSON.stringify(spec)}`;
    bytes += a.length + 1;
    args.push(a);
    return bytes <= MAX_ARG_BYTES && args.length <= MAX_RANGES;
  };
  // Neighbouring holes (or zero-length gaps between them) become one null source.
  let holeStart = -1;
  const flushHole = (end: number): boolean => {
    if (holeStart < 0) return true;
    const size = end - holeStart;
    holeStart = -1;
    return size === 0 || push({ driver: "null-co", size, "read-zeroes": true });
  };
  for (let i = 0; i < index.rangeCount; i++) {
    const start = index.rangeStarts[i]!;
    const end = index.rangeEnd(i);
    if ((end - start) % SECTOR !== 0) return null;
    const piece = index.rangePieces[i]!;
    if (piece === HOLE) {
      if (holeStart < 0) holeStart = start;
      continue;
    }
    if (!flushHole(start)) return null;
    if (index.pieceCsize[piece]! >= 0) return null; // lz4: only our server decodes it
    const file = index.pieceFile[piece]!;
    const path = paths[file];
    if (!path) return null;
    const offset = index.piecePos[piece]! + (start - index.pieceStart[piece]!);
    const use = uses.get(file) ?? 0;
    uses.set(file, use + 1);
    const node = `f${file}.${Math.floor(use / CHILDREN_PER_NODE)}`;
    const child = use % CHILDREN_PER_NODE === 0 ? { driver: "file", filename: path, "node-name": node } : node;
    if (!push({ driver: "raw", offset, size: end - start, file: child })) return null;
  }
  if (!flushHole(index.size)) return null;
  return args;
}
