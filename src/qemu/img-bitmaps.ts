/**
 * The persistent dirty bitmaps stored in a qcow2 image that no qemu has open (a shut-off
 * domain), through qemu-img on the host: list them with their flags, remove one
 * (docs/behaviour.md, "Bitmaps in the image").
 */
import type { Host } from "../host/host.js";
import type { DirtyBitmap } from "../libvirt/dirty-bitmap.js";
import { oneLine } from "../util/one-line.js";
import { QemuImgError, qemuImgInfoJson } from "./img.js";

/** A bitmap as the image stores it (`qemu-img info` format-specific.data.bitmaps). */
export interface ImageBitmap extends DirtyBitmap {
  /**
   * The flag "in-use": a writer has the image open, or had it and never closed it (crash,
   * SIGKILL). On an image nobody has open, the bitmap may have missed writes: qemu loads it as
   * inconsistent and it can only be removed.
   */
  inUse: boolean;
}

interface InfoBitmap {
  name: string;
  granularity: number;
  flags?: string[];
}

/** The bitmaps in a `qemu-img info --output json` text; none for images without any (or not qcow2). */
export function imageBitmapsFromInfo(json: string): ImageBitmap[] {
  const info = JSON.parse(json) as { "format-specific"?: { data?: { bitmaps?: InfoBitmap[] } } };
  return (info["format-specific"]?.data?.bitmaps ?? []).map((b) => {
    const flags = b.flags ?? [];
    return { name: b.name, granularity: b.granularity, recording: flags.includes("auto"), inUse: flags.includes("in-use") };
  });
}

/**
 * The bitmaps stored in an image (`qemu-img info`, with --force-share: it also reads an image
 * a qemu has open, whose bitmaps then show "in-use").
 */
export async function listImageBitmaps(host: Host, path: string): Promise<ImageBitmap[]> {
  return imageBitmapsFromInfo(await qemuImgInfoJson(host, path));
}

/**
 * Removes a bitmap from a qcow2 image (`qemu-img bitmap --remove`), in-use or not. Fails while
 * another process has the image open (qemu's write lock) or when there is no such bitmap.
 */
export async function removeImageBitmap(host: Host, path: string, name: string): Promise<void> {
  const r = await host.run("qemu-img", ["bitmap", "--remove", "-f", "qcow2", path, name]);
  if (r.exitCode !== 0) {
    throw new QemuImgError(`qemu-img bitmap --remove [${path}] [${name}] failed: ${oneLine(r.stderr) || `exit ${r.exitCode}`}`);
  }
}
