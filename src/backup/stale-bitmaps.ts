/**
 * Stale bitmaps (docs/behaviour.md, "Stale bitmaps"): persistent bitmaps in a disk image that
 * carry this chain's checkpoint names but that no libvirt checkpoint claims any more (a full
 * that removed checkpoint metadata only, a crash, lost libvirt state). They would make the next
 * checkpoint of that name fail ("Bitmap already exists"). Removed online through QMP, offline
 * through qemu-img; never a bitmap of another name.
 */
import { checkpointIndex } from "../backupset/layout.js";
import { oneLine } from "../util/one-line.js";
import { chainCheckpoints, checkpointNames, highestIndex } from "./checkpoints.js";
import { diskBitmaps } from "./disk-bitmaps.js";
import type { Preflight, RunContext } from "./run-context.js";

/** 0, or the index after every checkpoint and bitmap of this chain still present (ones that could not be removed). */
export async function indexAfterLeftovers(r: RunContext, m: Pick<Preflight, "domain" | "offline" | "disks">): Promise<number> {
  const names = [...(await chainCheckpoints(m.domain, r.chain))];
  for (const disk of await diskBitmaps(r, m)) names.push(...disk.bitmaps.map((b) => b.name));
  return highestIndex(names, r.chain) + 1;
}

export async function removeStaleBitmaps(r: RunContext, m: Pick<Preflight, "domain" | "offline" | "disks">): Promise<void> {
  const claimed = new Set(await checkpointNames(m.domain));
  for (const disk of await diskBitmaps(r, m)) {
    for (const b of disk.bitmaps.filter((x) => checkpointIndex(x.name, r.chain) !== null && !claimed.has(x.name))) {
      await removeOne(r, disk.target, b.name, () => disk.remove(b.name));
    }
  }
}

async function removeOne(r: RunContext, target: string, name: string, remove: () => Promise<void>): Promise<void> {
  try {
    await remove();
    r.log.info(`Removed stale bitmap [${name}] of disk [${target}]: no checkpoint claims it.`);
  } catch (e) {
    // The next checkpoint gets a higher index instead (firstIndex counts these names).
    r.log.warning(`Unable to remove stale bitmap [${name}] of disk [${target}]: ${oneLine((e as Error).message)}`);
  }
}
