/** Reference model for mapped chains: the disk bytes a chain of extent lists describes. */
import { createWriteStream } from "node:fs";
import yazl from "yazl";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { buildStream, pattern, type TestExtent } from "./streams.js";

const KiB = 1024;
const MiB = 1024 * KiB;

/** Applies chain layers byte by byte: a full replaces everything, an inc writes its data extents. */
export function modelDisk(layers: { size: number; full: boolean; extents: TestExtent[] }[]): Buffer {
  let disk = Buffer.alloc(0);
  for (const l of layers) {
    const next = Buffer.alloc(l.size);
    if (!l.full) disk.copy(next, 0, 0, Math.min(disk.length, l.size));
    for (const e of l.extents) if ("data" in e) e.data.copy(next, e.start, 0, Math.min(e.data.length, l.size - e.start));
    disk = next;
  }
  return disk;
}

/** Writes a zip with stored entries (like `virtnbdbackup -o -`). */
export function writeStoredZip(path: string, entries: { name: string; data: Buffer }[]): Promise<void> {
  const zip = new yazl.ZipFile();
  for (const e of entries) zip.addBuffer(e.data, e.name, { compress: false, forceZip64Format: true });
  zip.end();
  return new Promise((resolve, reject) => {
    const out = createWriteStream(path);
    zip.outputStream.pipe(out).on("close", () => resolve()).on("error", reject);
  });
}

/** Full-coverage extent list (data + zero frames) from a sparse list of data extents. */
export function fullExtents(size: number, data: { start: number; data: Buffer }[]): TestExtent[] {
  const out: TestExtent[] = [];
  let pos = 0;
  for (const d of [...data].sort((a, b) => a.start - b.start)) {
    if (d.start > pos) out.push({ start: pos, zero: d.start - pos });
    out.push(d);
    pos = d.start + d.data.length;
  }
  if (pos < size) out.push({ start: pos, zero: size - pos });
  return out;
}

/** One file of a test chain. */
export interface Spec {
  name: string;
  size: number;
  full: boolean;
  extents: TestExtent[];
  checkpoint: string;
  parent: string;
}

/** Writes the chain's stream files into `dir`; returns their paths in chain order. */
export async function writeChain(dir: string, specs: Spec[], opts: { compressLevel?: number; chunkSize?: number } = {}): Promise<string[]> {
  const paths: string[] = [];
  for (const s of specs) {
    const bytes = await buildStream(s.extents, {
      virtualSize: s.size,
      ...(opts.compressLevel !== undefined ? { compressLevel: opts.compressLevel } : {}),
      ...(opts.chunkSize !== undefined ? { chunkSize: opts.chunkSize } : {}),
      meta: { incremental: !s.full, checkpointName: s.checkpoint, parentCheckpoint: s.parent },
    });
    const p = join(dir, s.name);
    await writeFile(p, bytes);
    paths.push(p);
  }
  return paths;
}

/**
 * A full and two incs over a `size` disk: data, zero frames, overrides, data over a hole, a
 * dirty block now zero. One full extent is 100 bytes longer than 512 KiB unless `aligned`.
 */
export function chainSpecs(size: number, o: { aligned?: boolean } = {}): Spec[] {
  const fullData = [
    { start: 0, data: pattern(256 * KiB, 1) },
    { start: MiB, data: pattern(512 * KiB + (o.aligned ? 0 : 100), 2) },
    { start: 3 * MiB, data: pattern(300 * KiB, 3) },
  ];
  return [
    { name: "sda.full.data", size, full: true, extents: fullExtents(size, fullData), checkpoint: "virtnbdbackup.0", parent: "" },
    {
      name: "sda.inc.virtnbdbackup.1.data",
      size,
      full: false,
      extents: [
        { start: 64 * KiB, data: pattern(64 * KiB, 4) },
        { start: MiB + 200 * KiB, data: pattern(400 * KiB, 5) },
        { start: 2 * MiB, data: pattern(4096, 6) }, // over a hole of the full
      ],
      checkpoint: "virtnbdbackup.1",
      parent: "virtnbdbackup.0",
    },
    {
      name: "sda.inc.virtnbdbackup.2.data",
      size,
      full: false,
      extents: [
        { start: 0, data: pattern(4096, 7) },
        { start: 3 * MiB + 4096, data: Buffer.alloc(8192) }, // dirty block now zero (1.9.15 writes these as data)
      ],
      checkpoint: "virtnbdbackup.2",
      parent: "virtnbdbackup.1",
    },
  ];
}
