/**
 * Stale bitmaps (docs/behaviour.md, "Stale bitmaps"): persistent bitmaps in a disk image that
 * carry this chain's checkpoint names but that no libvirt checkpoint claims any more (a full
 * that removed checkpoint metadata only, a crash, lost libvirt state). They would make the next
 * checkpoint of that name fail ("Bitmap already exists"). Removed online through QMP, offline
 * through qemu-img; never a bitmap of another name.
 */
import { checkpointIndex } from "../backupset/layout.js";
import { oneLine } from "../util/one-line.js";
import { checkpointNames, highestIndex } from "./checkpoints.js";
import { diskBitmaps } from "./disk-bitmaps.js";
import type { Preflight, RunContext } from "./run-context.js";

/**
 * Removes this chain's stale bitmaps; returns the index after every checkpoint and bitmap of
 * this chain still there (0 when none): what could not be removed keeps its name, so a full
 * starts its chain after it. One listing of each for both.
 */
export async function removeStaleBitmaps(r: RunContext, m: Pick<Preflight, "domain" | "offline" | "disks">): Promise<number> {
  const [names, disks] = await Promise.all([checkpointNames(m.domain), diskBitmaps(r, m)]);
  const claimed = new Set(names);
  const left = [...names];
  for (const disk of disks) {
    for (const b of disk.bitmaps.filter((x) => checkpointIndex(x.name, r.chain) !== null)) {
      if (claimed.has(b.name) || !(await removeOne(r, disk.target, b.name, () => disk.remove(b.name)))) left.push(b.name);
    }
  }
  return highestIndex(left, r.chain) + 1;
}

/** True when the bitmap went; a failure is a warning. */
async function removeOne(r: RunContext, target: string, name: string, remove: () => Promise<void>): Promise<boolean> {
  try {
    await remove();
    r.log.info(`Removed stale bitmap [${name}] of disk [${target}]: no checkpoint claims it.`);
    return true;
  } catch (e) {
    // The next checkpoint gets a higher index instead (the index returned counts these names).
    r.log.warning(`Unable to remove stale bitmap [${name}] of disk [${target}]: ${oneLine((e as Error).message)}`);
    return false;
  }
}
