/**
 * The dirty bitmaps of a running domain's disks, from its qemu (QMP through libvirt), and their
 * removal (docs/behaviour.md, "Bitmaps in the image").
 *
 *   for (const disk of await listBlockBitmaps(domain)) disk.target, disk.node, disk.bitmaps
 *   await removeBlockBitmap(domain, disk.node, "virtnbdbackup.0");
 *
 * libvirt starts qemu with -blockdev: query-block names no drive, only the guest device
 * (`qdev`: the disk's libvirt alias, e.g. "sata0-0-0", or a QOM path through it,
 * "/machine/peripheral/virtio-disk1/virtio-backend"). The live domain XML maps the alias to the
 * disk target.
 */
import type { DirtyBitmap } from "./dirty-bitmap.js";
import { DomainXml } from "./domain-xml.js";
import { qmp, type QmpTarget } from "./qmp.js";

/** A bitmap as the running qemu reports it (QMP BlockDirtyInfo). */
export interface BlockBitmap extends DirtyBitmap {
  /** A block job uses it (a backup job's bitmap); it cannot be removed then. */
  busy: boolean;
  /** Stored in the image when qemu closes it (every checkpoint bitmap is). */
  persistent: boolean;
  /**
   * Loaded from the image with the flag "in-use": a writer never closed the image, so the
   * bitmap may have missed writes. qemu refuses to use it; it can only be removed.
   */
  inconsistent: boolean;
  /** Dirty bytes it holds now. */
  count: number;
}

/** A disk of a running domain: its guest device, the node at the top of its chain and that node's bitmaps. */
export interface DiskBlockNode {
  /** Disk target, e.g. "sda", "vda". */
  target: string;
  /**
   * The block node attached to the device (libvirt's "libvirt-N-format"): where checkpoint
   * bitmaps live and what block-dirty-bitmap-* and nbd-server-add take.
   */
  node: string;
  /** The device as qemu names it (query-block `qdev`), usable for HMP `qemu-io -d`. */
  qdev: string;
  /** Named bitmaps of `node` (anonymous ones, which only jobs create, are left out). */
  bitmaps: BlockBitmap[];
}

/** What listBlockBitmaps needs of a domain. */
export interface BlockBitmapsDomain extends QmpTarget {
  xmlDesc(flags?: number): Promise<string>;
}

/** One entry of QMP query-block's reply, the fields used here (qemu 7.2). */
export interface QueryBlockEntry {
  qdev?: string;
  inserted?: {
    "node-name"?: string;
    "dirty-bitmaps"?: {
      name?: string;
      granularity: number;
      count: number;
      recording: boolean;
      busy: boolean;
      persistent: boolean;
      /** Present (true) only for an inconsistent bitmap. */
      inconsistent?: boolean;
    }[];
  };
}

/** The disk aliases of a live domain XML: [{ target, alias }]. */
export function diskAliases(liveXml: string): { target: string; alias: string }[] {
  const out: { target: string; alias: string }[] = [];
  for (const disk of DomainXml.parse(liveXml).disks()) {
    const alias = disk.element.getElementsByTagName("alias")[0]?.getAttribute("name");
    if (disk.target && alias) out.push({ target: disk.target, alias });
  }
  return out;
}

/** True when query-block's `qdev` names the device with this alias (its id or a QOM path below it). */
function qdevIsAlias(qdev: string, alias: string): boolean {
  return qdev === alias || qdev.startsWith(`/machine/peripheral/${alias}/`) || qdev === `/machine/peripheral/${alias}`;
}

/**
 * Joins query-block's reply with the disk aliases: one DiskBlockNode per disk with a medium,
 * in the order of `aliases`. Devices without a medium (an empty cdrom) are left out.
 */
export function diskBlockNodes(blocks: readonly QueryBlockEntry[], aliases: readonly { target: string; alias: string }[]): DiskBlockNode[] {
  const out: DiskBlockNode[] = [];
  for (const { target, alias } of aliases) {
    const block = blocks.find((b) => b.qdev !== undefined && qdevIsAlias(b.qdev, alias));
    const node = block?.inserted?.["node-name"];
    if (!block || !node) continue;
    const bitmaps: BlockBitmap[] = [];
    for (const b of block.inserted?.["dirty-bitmaps"] ?? []) {
      if (b.name === undefined) continue;
      bitmaps.push({
        name: b.name,
        granularity: b.granularity,
        recording: b.recording,
        busy: b.busy,
        persistent: b.persistent,
        inconsistent: b.inconsistent === true,
        count: b.count,
      });
    }
    out.push({ target, node, qdev: block.qdev!, bitmaps });
  }
  return out;
}

/** The disks of a running domain with their top block node and its bitmaps, in domain XML order (XML and QMP asked together). */
export async function listBlockBitmaps(domain: BlockBitmapsDomain): Promise<DiskBlockNode[]> {
  const [xml, blocks] = await Promise.all([domain.xmlDesc(), qmp<QueryBlockEntry[]>(domain, "query-block")]);
  return diskBlockNodes(blocks, diskAliases(xml));
}

/**
 * Removes a bitmap from a node of a running domain (QMP block-dirty-bitmap-remove): from qemu
 * and, for a persistent one, from the image. Works for inconsistent bitmaps; a busy one (used by
 * a running backup job) or an unknown name rejects with qemu's message (QmpError).
 */
export async function removeBlockBitmap(domain: QmpTarget, node: string, name: string): Promise<void> {
  await qmp(domain, "block-dirty-bitmap-remove", { node, name });
}
