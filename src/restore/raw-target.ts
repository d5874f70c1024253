/**
 * `--to-raw` (abbbi/virtnbdbackup #321; docs/behaviour.md, "Raw targets"): one disk's chain
 * straight into a block device or a new raw image file named by `-o`, on this machine. A device
 * that holds a partition table or filesystem (wipefs finds a signature) is refused unless
 * `--force`; one smaller than the disk always. A file is never written over: a new one is built
 * as `<path>.partial`, synced and renamed. No VM config, no boot files, no define.
 */
import { stat } from "node:fs/promises";
import { execa } from "execa";
import type { ChainFile } from "../backupset/chain-order.js";
import type { Logger } from "../report/log.js";
import { Progress } from "../report/progress.js";
import { eventsOnStderr, runEvents } from "../report/events.js";
import { logging } from "../report/log.js";
import { LocalHost } from "../host/local.js";
import { createImage } from "../qemu/img.js";
import { partialPath } from "../storage/durable.js";
import type { BackupSetSource, SetFile } from "../storage/set-source.js";
import { oneLine } from "../util/one-line.js";
import { convertChain } from "./convert.js";
import type { RestoreArgs } from "./options.js";
import { disksInSet } from "./preflight.js";
import { cptNamesOf, dataFilesOf, diskChain } from "./restore.js";

class RawTargetRefusal extends Error {}

export async function restoreToRaw(args: RestoreArgs, set: BackupSetSource, log: Logger): Promise<number> {
  const progress = new Progress({ noprogress: args.noprogress || eventsOnStderr(args) });
  logging.setConsole(progress);
  try {
    const listing = await set.list();
    const disk = chooseDisk(args, listing);
    const chain = await diskChain(set, listing, disk, dataFilesOf(listing, disk), await cptNamesOf(set, listing, null), args.until);
    const size = chain.at(-1)!.meta.virtualSize;
    const device = await targetKind(args.output);
    const total = chain.reduce((a, f) => a + f.meta.dataSize, 0);
    const bar = progress.bar(disk, total);
    const events = runEvents.disk({ disk, source: chain.map((f) => set.shownName(f.name)), target: args.output, total });
    const onProgress = (n: number) => {
      bar.increment(n);
      events.progress(n);
    };
    try {
      if (device) await intoDevice(args, set, disk, chain, size, log, onProgress);
      else await intoNewFile(args, set, disk, chain, size, log, onProgress);
      events.done({ bytes: total, checksum: null });
    } finally {
      bar.done();
    }
    return 0;
  } catch (e) {
    log.error(e instanceof RawTargetRefusal ? e.message : `Disk restore failed: [${oneLine((e as Error).message)}]`);
    return 1;
  } finally {
    progress.stop();
    logging.setConsole(null);
  }
}

/** `-d`, or the set's only disk. */
function chooseDisk(args: RestoreArgs, listing: SetFile[]): string {
  if (args.uri.includes("+ssh")) throw new RawTargetRefusal("Option --to-raw restores on this machine only, not on a remote hypervisor.");
  if (args.adjustConfig || args.define || args.sequence || args.raw) throw new RawTargetRefusal("Option --to-raw restores one disk into a device or file: it does not go with -c, -D, --sequence or --raw.");
  const disks = disksInSet(listing);
  if (args.disk) {
    if (!disks.includes(args.disk)) throw new RawTargetRefusal(`The backup set has no disk [${args.disk}], its disks: [${disks.join(", ")}]`);
    return args.disk;
  }
  if (disks.length !== 1) throw new RawTargetRefusal(`Option --to-raw restores one disk: choose it with -d (the set has [${disks.join(", ")}]).`);
  return disks[0]!;
}

/** true: an existing block device; false: a path that does not exist yet; anything else is refused. */
async function targetKind(path: string): Promise<boolean> {
  const s = await stat(path).catch(() => null);
  if (s === null) return false;
  if (s.isBlockDevice()) return true;
  throw new RawTargetRefusal(`Target [${path}] exists and is not a block device: won't overwrite it.`);
}

async function intoDevice(args: RestoreArgs, set: BackupSetSource, disk: string, chain: ChainFile[], size: number, log: Logger, onProgress: (n: number) => void): Promise<void> {
  const device = args.output;
  const deviceSize = Number((await execa("blockdev", ["--getsize64", device])).stdout.trim());
  if (deviceSize < size) throw new RawTargetRefusal(`Block device [${device}] holds ${deviceSize} bytes, disk [${disk}] needs ${size}: too small.`);
  const signatures = await deviceSignatures(device);
  if (signatures.length > 0 && !args.force) {
    throw new RawTargetRefusal(`Block device [${device}] holds [${signatures.join(", ")}]: restore over it only with --force.`);
  }
  if (signatures.length > 0) log.warning(`Writing over [${signatures.join(", ")}] on [${device}] (--force).`);
  log.info(`Restoring disk [${disk}] into block device [${device}] (${size} bytes of ${deviceSize}).`);
  // Holes must read as zeros on a used device: no --target-is-zero; NBD from our server for progress.
  await convertChain({ disk, chain, set, image: device, compress: false, viaNbd: true, output: { format: "raw", targetIsZero: false }, onProgress, log: (m) => log.debug(m) });
  log.info(`Restored disk [${disk}] into [${device}].`);
}

async function intoNewFile(args: RestoreArgs, set: BackupSetSource, disk: string, chain: ChainFile[], size: number, log: Logger, onProgress: (n: number) => void): Promise<void> {
  const host = new LocalHost();
  const target = args.output;
  const partial = partialPath(target);
  await host.remove(partial).catch(() => undefined);
  log.info(`Restoring disk [${disk}] into new raw image [${target}] (${size} bytes, sparse).`);
  await createImage(host, partial, { format: "raw", size, preallocate: false });
  try {
    await convertChain({ disk, chain, set, image: partial, compress: false, output: { format: "raw", targetIsZero: true }, onProgress, log: (m) => log.debug(m) });
    await host.moveNoReplace(partial, target);
  } catch (e) {
    await host.remove(partial).catch(() => undefined);
    throw e;
  }
  log.info(`Restored disk [${disk}] into [${target}].`);
}

/** What wipefs finds on the device (partition tables, filesystems, RAID or LVM members). */
async function deviceSignatures(device: string): Promise<string[]> {
  const r = await execa("wipefs", ["--no-act", "--json", device], { reject: false });
  if (r.exitCode !== 0) throw new RawTargetRefusal(`Unable to check [${device}] for signatures (wipefs): ${oneLine(String(r.stderr))}`);
  const parsed = JSON.parse(String(r.stdout) || '{"signatures":[]}') as { signatures?: { type?: string; offset?: string }[] };
  return (parsed.signatures ?? []).map((s) => `${s.type ?? "?"} at ${s.offset ?? "?"}`);
}
