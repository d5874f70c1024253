/**
 * The checks of a backup run before anything changes: the domain and its state, foreign
 * checkpoints, online/offline (-S), the disks and the level, a leftover job, an unfinished set.
 */
import { stat } from "../storage/files.js";
import { join } from "node:path";
import { dataFileName, unixIdent, type Level } from "../backupset/layout.js";
import { openLibvirt } from "../connect/session.js";
import type { Connection } from "../libvirt/connection.js";
import * as C from "../libvirt/constants.js";
import { isLibvirtError } from "../libvirt/errors.js";
import { selectDisks, type SelectedDisk } from "../libvirt/disk-selection.js";
import type { Domain } from "../libvirt/domain.js";
import { DomainXml } from "../libvirt/domain-xml.js";
import type { Logger } from "../report/log.js";
import { foreignCheckpoints } from "./checkpoints.js";
import type { BackupArgs } from "./options.js";
import { BackupRefusal, type DomainState, type RunContext } from "./run-context.js";
import { saveBootFiles, saveTpmState, saveVmConfig } from "./side-files.js";
import { awaitLater } from "../util/in-flight.js";

export async function lookupDomain(r: RunContext): Promise<Domain> {
  try {
    return await r.conn.lookupDomain(r.args.domain);
  } catch (e) {
    throw new BackupRefusal(`Unable to find domain [${r.args.domain}]: ${(e as Error).message}`);
  }
}

/**
 * Guest info (for osinfo), the libvirt feature check, online/offline and `-S`. The calls go out
 * together (one round trip to a remote libvirt, four calls: libuv's four threads run them at
 * once); their answers are used in the original's order.
 */
export async function domainState(r: RunContext, domain: Domain): Promise<DomainState> {
  const { args, log } = r;
  const guest = awaitLater(domain.guestInfo());
  const liveXml = awaitLater(domain.xmlDesc(0));
  const version = awaitLater(r.conn.libVersion());
  // `--check` reports a foreign checkpoint as a finding instead.
  const foreign = args.check || !createsCheckpointChain(args.level) ? null : awaitLater(foreignCheckpoints(domain));
  let osinfo: Record<string, unknown> | null = null;
  let noGuestAgent: string | null = null;
  try {
    osinfo = await guest;
    log.info(`Domain info: OS: [${osinfo["os.pretty-name"] ?? osinfo["os.name"] ?? ""}] Arch: [${osinfo["os.machine"] ?? ""}] Hostname: [${osinfo["hostname"] ?? ""}]`);
  } catch (e) {
    log.debug(`No guest agent information: ${(e as Error).message}`);
    if (isLibvirtError(e, C.VIR_ERR_ARGUMENT_UNSUPPORTED)) noGuestAgent = (e as Error).message;
  }
  let xml = await liveXml;
  let domXml = DomainXml.parse(xml);
  if ((await version) < C.LIBVIRT_VERSION_INCREMENTAL_BACKUP_DEFAULT && !domXml.hasQemuCapability("incremental-backup")) {
    throw new BackupRefusal("Virtual machine does not support required backup features, please adjust virtual machine configuration.");
  }
  if (foreign) refuseForeignCheckpoints(await foreign, log);
  // Active or not from the same XML (its `id`), not a call of its own.
  let offline = !domXml.active;
  let startedPaused = false;
  if (offline && args.startDomain) {
    log.info("Starting domain in paused state");
    await domain.create(C.VIR_DOMAIN_START_PAUSED | C.VIR_DOMAIN_START_AUTODESTROY);
    offline = false;
    startedPaused = true;
    xml = await domain.xmlDesc(0);
    domXml = DomainXml.parse(xml);
  }
  let givenLevel = args.level;
  if (offline && givenLevel === "full") {
    log.warning("Domain is offline, resetting backup options.");
    log.warning("New Backup level: [copy].");
    givenLevel = "copy";
  }
  if (offline && args.startonly) throw new BackupRefusal("Domain is offline: must be active for this function.");
  return { domain, osinfo, noGuestAgent, offline, startedPaused, xml, domXml, givenLevel };
}

/** The levels whose checkpoints form a chain: they refuse checkpoints of other tools. */
const createsCheckpointChain = (level: BackupArgs["level"]): boolean => level === "full" || level === "inc" || level === "diff";

/** full/inc/diff refuse checkpoints this tool did not create (the original's CRITICAL lines). */
function refuseForeignCheckpoints(foreign: string[], log: Logger): void {
  if (foreign.length === 0) return;
  log.critical(`Foreign checkpoint found: [${foreign[0]}]`);
  log.critical("Checkpoints not created by this tool would break the bitmap chain.");
  log.critical("Remove them with [virsh checkpoint-delete] or back up into a new directory.");
  throw new BackupRefusal();
}

/** The disks to back up (include/exclude, raw), and the level they allow. */
export async function chooseDisks(r: RunContext, domXml: DomainXml, decided: Level): Promise<{ disks: SelectedDisk[]; level: Level }> {
  const { args, log, conn } = r;
  let level = decided;
  let disks = await selectDisks(
    domXml,
    {
      include: args.include,
      exclude: args.exclude ? args.exclude.split(",") : [],
      raw: args.raw,
      resolveVolume: (pool, volume) => volumePath(conn, pool, volume),
    },
    log,
  );
  if (args.raw && (level === "inc" || level === "diff") && disks.some((d) => d.raw)) {
    log.warning("Raw disks can't be included during incremental or differential backup.");
    log.warning("Excluding raw disks.");
    disks = disks.filter((d) => !d.raw);
  }
  if (level !== "copy" && disks.length > 0 && !disks.some((d) => d.format.startsWith("qcow"))) {
    log.info("Only raw disks attached, switching to backup mode copy.");
    level = "copy";
  }
  return { disks, level };
}

async function volumePath(conn: Connection, pool: string, volume: string): Promise<string> {
  return (await (await conn.storagePoolByName(pool)).volumeByName(volume)).path();
}

/** No disk to back up: the config and boot files are still saved (as the original). */
export async function saveConfigWithoutDisks(r: RunContext, level: Level, d: DomainState): Promise<void> {
  const ctx = { dir: r.outDir, archive: null, host: r.host, level, ident: level === "copy" ? "copy" : unixIdent(), log: r.log };
  await saveVmConfig(ctx, d.xml);
  await saveBootFiles(ctx, d.domXml.osPaths());
  await saveTpmState(ctx, d.domXml);
}

/** An inc/diff whose last checkpoint has no saved data (a run that died early) would miss changes. */
export async function refuseMissingData(r: RunContext, cpt: string[], disks: SelectedDisk[]): Promise<void> {
  const last = cpt.at(-1);
  if (last === undefined) return;
  const exists = async (name: string) => (await stat(join(r.outDir, name)).catch(() => null)) !== null;
  const withFull = new Set<string>();
  for (const d of disks) if (await exists(dataFileName(d.target, "full", ""))) withFull.add(d.target);
  for (const d of disks.filter((x) => !x.raw)) {
    // A disk without a full in a set that has others' was added since: the chain check names that (chain-continuation.ts).
    if (withFull.size > 0 && !withFull.has(d.target)) continue;
    // The set's first checkpoint is its full's (virtnbdbackup.0, or where a generation or chain starts).
    const expected = last === cpt[0] ? dataFileName(d.target, "full", last) : dataFileName(d.target, "inc", last);
    if (!(await exists(expected))) {
      throw new BackupRefusal(
        `Checkpoint [${last}] is listed in [${r.cptPath}] but its data file [${expected}] is missing: the run that created it did not finish.`,
        "An incremental backup now would miss the changes made before that checkpoint. Execute a full backup.",
      );
    }
  }
}

/** The exact commands that end a backup job left behind by a killed run. */
export function leftoverJobHint(args: BackupArgs, outDir: string): string {
  return (
    `A backup job is still active on domain [${args.domain}] (a killed run leaves it behind): stop it with ` +
    `[virtnbdbackup -d ${args.domain} -o ${outDir} -k] or [virsh -c ${args.uri} domjobabort ${args.domain}].`
  );
}

/** Before refusing to continue an unfinished set: name a job that its killed run left running. */
export async function reportLeftoverJob(args: BackupArgs, outDir: string, log: Logger): Promise<void> {
  let conn: Connection | null = null;
  try {
    conn = await openLibvirt(args);
    const domain = await conn.lookupDomain(args.domain);
    try {
      if ((await domain.jobInfo()).type !== C.VIR_DOMAIN_JOB_NONE) log.error(leftoverJobHint(args, outDir));
    } finally {
      domain.free();
    }
  } catch {
    /* best effort: the refusal follows anyway */
  } finally {
    await conn?.close().catch(() => undefined);
  }
}
