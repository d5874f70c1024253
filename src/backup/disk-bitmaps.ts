/**
 * The persistent bitmaps of the run's qcow2 disks (docs/behaviour.md, "Bitmaps in the image"),
 * one view for both ways of seeing them: through the running qemu (QMP) or, shut off, through
 * qemu-img; each with what is wrong with it and how to remove it.
 */
import { listBlockBitmaps, removeBlockBitmap } from "../libvirt/block-bitmaps.js";
import { listImageBitmaps, removeImageBitmap } from "../qemu/img-bitmaps.js";
import type { Preflight, RunContext } from "./run-context.js";

export interface DiskBitmaps {
  target: string;
  image: string;
  /** `broken`: why the bitmap cannot be used, null when sound. */
  bitmaps: { name: string; broken: string | null }[];
  remove(name: string): Promise<void>;
}

export async function diskBitmaps(r: Pick<RunContext, "host">, m: Pick<Preflight, "domain" | "offline" | "disks">): Promise<DiskBitmaps[]> {
  const qcow = m.disks.filter((d) => !d.raw && d.format.startsWith("qcow"));
  if (!m.offline) {
    const live = await listBlockBitmaps(m.domain);
    return qcow.map((d) => {
      const node = live.find((x) => x.target === d.target);
      return {
        target: d.target,
        image: d.path,
        bitmaps: (node?.bitmaps ?? []).map((b) => ({ name: b.name, broken: b.inconsistent ? "inconsistent (its image was not closed cleanly)" : null })),
        remove: (name: string) => (node ? removeBlockBitmap(m.domain, node.node, name) : Promise.resolve()),
      };
    });
  }
  const out: DiskBitmaps[] = [];
  for (const d of qcow) {
    const bitmaps = (await listImageBitmaps(r.host, d.path)).map((b) => ({ name: b.name, broken: b.inUse ? `flagged in-use in [${d.path}] (the image was not closed cleanly)` : null }));
    out.push({ target: d.target, image: d.path, bitmaps, remove: (name: string) => removeImageBitmap(r.host, d.path, name) });
  }
  return out;
}
