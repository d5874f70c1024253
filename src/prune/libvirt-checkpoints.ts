/**
 * The libvirt checkpoints of a removed chain (docs/prune.md, "Checkpoints"): only those that are
 * provably the chain's own: named in its checkpoint list and with the creation time of the XML the
 * chain saved. A checkpoint of the same name made later (the original numbers every new chain from
 * `virtnbdbackup.0`, so monthly folders share names) belongs to another chain and stays.
 */
import * as C from "../libvirt/constants.js";
import { parseCheckpointXml } from "../libvirt/backup-xml.js";
import type { Connection } from "../libvirt/connection.js";
import type { Domain } from "../libvirt/domain.js";
import { isLibvirtError } from "../libvirt/errors.js";
import { oneLine } from "../util/one-line.js";
import type { Chain } from "./chains.js";

export interface CheckpointLog {
  info(m: string): void;
  warning(m: string): void;
  debug(m: string): void;
}

async function lookupDomain(conn: Connection, name: string): Promise<Domain | null> {
  try {
    return await conn.lookupDomain(name);
  } catch (e) {
    if (isLibvirtError(e, C.VIR_ERR_NO_DOMAIN)) return null;
    throw e;
  }
}

async function removeIfOwn(domain: Domain, chain: Chain, name: string, log: CheckpointLog): Promise<void> {
  const saved = chain.created.get(name);
  let cp;
  try {
    cp = await domain.checkpointLookupByName(name);
  } catch (e) {
    if (isLibvirtError(e, C.VIR_ERR_NO_DOMAIN_CHECKPOINT)) return;
    throw e;
  }
  try {
    const live = parseCheckpointXml(await cp.xmlDesc()).creationTime;
    if (saved === undefined || live !== saved) {
      log.info(`Checkpoint [${name}] of domain [${chain.domain}] is not the one [${chain.location}] saved: left.`);
      return;
    }
    try {
      await cp.delete(0);
    } catch (e) {
      log.warning(`Unable to remove checkpoint [${name}] with its bitmaps (${oneLine((e as Error).message)}): removing its metadata.`);
      await cp.delete(C.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY);
    }
    log.info(`Removed checkpoint [${name}] of domain [${chain.domain}].`);
  } finally {
    cp.free();
  }
}

/** Removes the chain's own checkpoints, newest first (children before parents). */
export async function removeChainCheckpoints(conn: Connection, chain: Chain, log: CheckpointLog): Promise<void> {
  if (chain.domain === null || chain.checkpoints.length === 0) return;
  const domain = await lookupDomain(conn, chain.domain);
  if (!domain) {
    log.debug(`Domain [${chain.domain}] is not defined at this URI: no checkpoints to remove.`);
    return;
  }
  try {
    for (const name of [...chain.checkpoints].reverse()) await removeIfOwn(domain, chain, name, log);
  } finally {
    domain.free();
  }
}
