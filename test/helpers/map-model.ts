/** Reference model for mapped chains: the disk bytes a chain of extent lists describes. */
import { createWriteStream } from "node:fs";
import yazl from "yazl";
import type { TestExtent } from "./streams.js";

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
