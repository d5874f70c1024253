/**
 * A running disk's NBD backing made to read from a new server (live restore's resume): libvirt
 * 9.0 has no reconnect delay for NBD sources, so once the serving process is gone qemu's NBD
 * node stays broken. Through QMP a new NBD node is added and put under the backing's raw format
 * node (`blockdev-reopen` with a new `file`), the node libvirt knows by the `index` of the disk's
 * `<backingStore>` (`libvirt-<index>-format`). libvirt's view of the disk stays true: same
 * backing node, same socket; a block pull then copies through the new connection. The added node
 * is deleted again once the pull dropped the backing.
 */
import { DomainXml } from "./domain-xml.js";
import { qmp, type QmpTarget } from "./qmp.js";

export interface NbdBackingTarget extends QmpTarget {
  xmlDesc(flags?: number): Promise<string>;
}

/** `libvirt-<index>-format` of the disk's first backing store, or null without one (or without an index: an inactive XML). */
export async function backingFormatNode(domain: NbdBackingTarget, disk: string): Promise<string | null> {
  const d = DomainXml.parse(await domain.xmlDesc(0)).disk(disk);
  const bs = d?.element.getElementsByTagName("backingStore")[0];
  const index = bs?.getAttribute("index");
  return index ? `libvirt-${index}-format` : null;
}

/** Connects the disk's raw backing to `socket`/`exportName` through a new node named `nodeName`. False: the disk has no backing. */
export async function reconnectNbdBacking(domain: NbdBackingTarget, disk: string, o: { socket: string; exportName: string; nodeName: string }): Promise<boolean> {
  const format = await backingFormatNode(domain, disk);
  if (!format) return false;
  await qmp(domain, "blockdev-add", { driver: "nbd", "node-name": o.nodeName, server: { type: "unix", path: o.socket }, export: o.exportName, "read-only": true });
  await qmp(domain, "blockdev-reopen", { options: [{ "node-name": format, driver: "raw", "read-only": true, file: o.nodeName }] });
  return true;
}

/** Deletes a node `reconnectNbdBacking` added, once nothing uses it. */
export async function dropNbdNode(domain: QmpTarget, nodeName: string): Promise<void> {
  await qmp(domain, "blockdev-del", { "node-name": nodeName });
}
