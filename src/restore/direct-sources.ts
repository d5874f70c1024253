/**
 * qemu-img reads uncompressed stream files itself: `qemu-img convert` concatenates its source
 * images, so the merged chain index becomes one source per range — a `raw` view (byte offset
 * and size) into the stream file that holds the range, or a `null-co` that reads zeroes for a
 * hole (skipped on a zeroed target, so the image stays thin). No NBD hop, no copy through our
 * process: qemu reads the page cache with its own I/O threads.
 *
 *   directPasses(index, ["/set/sda.full.data", "/set/sda.inc.virtnbdbackup.1.data"])[0].sources
 *   // → ['json:{"driver":"raw","offset":40,"size":1048576,"file":{"driver":"file",…,"node-name":"f0"}}',
 *   //    'json:{"driver":"null-co","size":3145728,"read-zeroes":true}', …]  or null
 *
 * A file node is shared by up to CHILDREN_PER_NODE ranges, then the file is opened again under
 * a new node name: qemu walks a node's parents on every request, so one node under all ~1000
 * ranges of a fragmented full cost qemu-img 3.4 s of CPU for 2.7 GiB (0.2 s with 32 per node,
 * 2026-12-05). Long chains (more than MAX_RANGES ranges) are copied in passes, one qemu-img
 * after another, each over a part of the disk and writing the same part of the target through
 * a raw view of it (directPasses). Null when the chain does not fit: a compressed piece, a file
 * that is not a plain local file, a range that is not a multiple of 512 bytes (qemu's raw
 * driver needs that); the caller then serves the chain over NBD.
 */
import { HOLE, type ChainIndex } from "../chain/chain-index.js";

/** Command-line budget: far below the kernel's argument limit (ARG_MAX, 2 MiB by default). */
const MAX_ARG_BYTES = 512 * 1024;

/**
 * Sources of one qemu-img at most. qemu-img holds ~38 KiB per source: a full and 30 incs of 64
 * scattered MiB each (2463 ranges) in one qemu-img peaked at 94 MiB, more than this process;
 * in passes of 1024 it stays at ~45 (2026-12-05). A full of 2 GiB has ~200.
 */
export const MAX_RANGES = 1024;
const SECTOR = 512;
export const CHILDREN_PER_NODE = 32;

/** One qemu-img convert: its sources cover the disk bytes [offset, offset + size). */
export interface DirectPass {
  offset: number;
  size: number;
  sources: string[];
}

/**
 * A pass ends at a disk offset that is a multiple of this (qcow2's default cluster size), so
 * passes rarely share a cluster of the target; they write in offset order like a single pass.
 */
export const PASS_ALIGN = 64 << 10;

/**
 * The chain as qemu-img sources, in passes of at most MAX_RANGES sources (a pass ends at the
 * first PASS_ALIGN boundary after that, the bytes of its command line below MAX_ARG_BYTES);
 * null when qemu-img cannot read the chain itself (see the top). `maxPasses` 1: a single
 * command (the caller cannot write the target in parts, e.g. `--compress`).
 */
export function directPasses(index: ChainIndex, paths: readonly (string | null)[], maxPasses = Infinity): DirectPass[] | null {
  const passes: DirectPass[] = [];
  let pass = newPass(0);
  for (let i = 0; i < index.rangeCount; i++) {
    const start = index.rangeStarts[i]!;
    const end = index.rangeEnd(i);
    if ((end - start) % SECTOR !== 0) return null;
    if (pass.count >= MAX_RANGES && start % PASS_ALIGN === 0) {
      if (!pass.close(start, passes)) return null;
      pass = newPass(start);
    }
    const piece = index.rangePieces[i]!;
    if (piece === HOLE) {
      pass.hole(start);
      continue;
    }
    if (index.pieceCsize[piece]! >= 0) return null; // lz4: only our server decodes it
    const file = index.pieceFile[piece]!;
    const path = paths[file];
    if (!path) return null;
    const offset = index.piecePos[piece]! + (start - index.pieceStart[piece]!);
    pass.view(start, file, path, offset, end - start);
    if (pass.count > 2 * MAX_RANGES) return null; // no boundary to end a pass at
  }
  if (!pass.close(index.size, passes)) return null;
  return passes.length <= maxPasses ? passes : null;
}

/**
 * One qemu-img command of a direct copy: a single pass writes the image; each of several writes
 * its part of the image through a raw view (offset, size) of it, in offset order.
 */
export function directCommand(base: string[], pass: DirectPass, whole: boolean, format: "qcow2" | "raw", image: string): string[] {
  if (whole) return [...base, "-O", format, ...pass.sources, image];
  const file = image.replaceAll(",", ",,"); // image-opts escape a comma by doubling it
  const target = format === "qcow2" ? `file.driver=qcow2,file.file.driver=file,file.file.filename=${file}` : `file.driver=file,file.filename=${file}`;
  return [...base, ...pass.sources, "--target-image-opts", `driver=raw,offset=${pass.offset},size=${pass.size},${target}`];
}

/** Sources of one pass being built: raw views (their file nodes shared), holes merged. */
function newPass(offset: number) {
  const sources: string[] = [];
  const uses = new Map<number, number>();
  let bytes = 0;
  let holeStart = -1;
  const push = (spec: object) => {
    const a = `json:${JSON.stringify(spec)}`;
    bytes += a.length + 1;
    sources.push(a);
  };
  // Neighbouring holes (or zero-length gaps between them) become one null source.
  const flushHole = (end: number) => {
    if (holeStart >= 0 && end > holeStart) push({ driver: "null-co", size: end - holeStart, "read-zeroes": true });
    holeStart = -1;
  };
  return {
    /** Sources so far, a hole not yet pushed included. */
    get count() {
      return sources.length + (holeStart >= 0 ? 1 : 0);
    },
    hole(start: number) {
      if (holeStart < 0) holeStart = start;
    },
    view(start: number, file: number, path: string, offset: number, size: number) {
      flushHole(start);
      const use = uses.get(file) ?? 0;
      uses.set(file, use + 1);
      const node = `f${file}.${Math.floor(use / CHILDREN_PER_NODE)}`;
      const child = use % CHILDREN_PER_NODE === 0 ? { driver: "file", filename: path, "node-name": node } : node;
      push({ driver: "raw", offset, size, file: child });
    },
    /** Ends the pass at disk offset `end`; false when its command line would be too long. */
    close(end: number, into: DirectPass[]): boolean {
      flushHole(end);
      if (bytes > MAX_ARG_BYTES) return false;
      if (end > offset) into.push({ offset, size: end - offset, sources });
      return true;
    },
  };
}
