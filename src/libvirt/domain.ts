/**
 * A libvirt domain (virDomainPtr): state and lifecycle, XML, autostart, pull-mode backup jobs,
 * job and block info, guest agent calls (freeze/thaw, guest info) and qemu monitor commands.
 * Get one from `Connection.lookupDomain()` & co. `free()` drops the reference now; a GC
 * finalizer does it otherwise.
 */
import { native, type LvDomainHandle, type LvTypedParams } from "../native/index.js";
import { Checkpoint } from "./checkpoint.js";
import * as C from "./constants.js";
import { lvCall } from "./errors.js";

export interface DomainState {
  /** C.VIR_DOMAIN_RUNNING, C.VIR_DOMAIN_PAUSED, C.VIR_DOMAIN_SHUTOFF, … */
  state: number;
  /** State-specific reason (virDomain<State>Reason). */
  reason: number;
}

/** virDomainJobInfo. */
export interface JobInfo {
  /** C.VIR_DOMAIN_JOB_NONE, _BOUNDED, _UNBOUNDED, … */
  type: number;
  timeElapsed: number;
  timeRemaining: number;
  dataTotal: number;
  dataProcessed: number;
  dataRemaining: number;
  memTotal: number;
  memProcessed: number;
  memRemaining: number;
  fileTotal: number;
  fileProcessed: number;
  fileRemaining: number;
}

export interface JobStats {
  /** C.VIR_DOMAIN_JOB_* */
  type: number;
  /** Typed parameters by field name, e.g. "operation", "time_elapsed". */
  params: LvTypedParams;
}

/** virDomainBlockInfo, bytes. */
export interface BlockInfo {
  capacity: number;
  allocation: number;
  physical: number;
}

/** virDomainBlockJobInfo. */
export interface BlockJobInfo {
  /** C.VIR_DOMAIN_BLOCK_JOB_TYPE_*; a backup job is C.VIR_DOMAIN_BLOCK_JOB_TYPE_BACKUP (5). */
  type: number;
  bandwidth: number;
  cur: number;
  end: number;
}

/** What a domain (or pool) needs of the connection it came from (a narrow view: no import cycle). */
export interface ConnectionRef {
  libVersion(): Promise<number>;
}

export class Domain {
  #handle: LvDomainHandle | null;
  /** Domain name (cached by libvirt when looked up). */
  readonly name: string;
  /** Domain UUID string (cached by libvirt when looked up). */
  readonly uuid: string;

  /** @internal made by Connection methods. */
  constructor(
    readonly connection: ConnectionRef,
    handle: LvDomainHandle,
  ) {
    this.#handle = handle;
    this.name = native.lvDomainGetName(handle);
    this.uuid = native.lvDomainGetUUIDString(handle);
  }

  get handle(): LvDomainHandle {
    if (!this.#handle) throw new Error(`domain ${this.name} is freed`);
    return this.#handle;
  }

  /** Drops the reference now (idempotent; a finalizer does it otherwise). */
  free(): void {
    if (this.#handle) native.lvFree(this.#handle);
    this.#handle = null;
  }

  /** Domain XML (virDomainGetXMLDesc; C.VIR_DOMAIN_XML_INACTIVE, _SECURE, …). */
  async xmlDesc(flags = 0): Promise<string> {
    return lvCall(native.lvDomainGetXMLDesc(this.handle, flags));
  }

  /** virDomainGetState. */
  async state(): Promise<DomainState> {
    return lvCall(native.lvDomainGetState(this.handle));
  }

  async isActive(): Promise<boolean> {
    return (await lvCall(native.lvDomainIsActive(this.handle))) === 1;
  }

  async isPersistent(): Promise<boolean> {
    return (await lvCall(native.lvDomainIsPersistent(this.handle))) === 1;
  }

  /** Starts the domain (virDomainCreateWithFlags; C.VIR_DOMAIN_START_PAUSED, _AUTODESTROY, …). */
  async create(flags = 0): Promise<void> {
    await lvCall(native.lvDomainCreate(this.handle, flags));
  }

  /** Same as create(): starts the domain. */
  async start(flags = 0): Promise<void> {
    await this.create(flags);
  }

  /** Stops the domain immediately (virDomainDestroyFlags). */
  async destroy(flags = 0): Promise<void> {
    await lvCall(native.lvDomainDestroy(this.handle, flags));
  }

  /** Asks the guest to shut down (virDomainShutdownFlags). */
  async shutdown(flags = 0): Promise<void> {
    await lvCall(native.lvDomainShutdown(this.handle, flags));
  }

  async suspend(): Promise<void> {
    await lvCall(native.lvDomainSuspend(this.handle));
  }

  async resume(): Promise<void> {
    await lvCall(native.lvDomainResume(this.handle));
  }

  /**
   * Removes the definition (virDomainUndefineFlags). Domains with checkpoints need
   * C.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA, UEFI domains C.VIR_DOMAIN_UNDEFINE_NVRAM.
   */
  async undefine(flags = 0): Promise<void> {
    await lvCall(native.lvDomainUndefine(this.handle, flags));
  }

  /** virDomainGetAutostart. */
  async autostart(): Promise<boolean> {
    return (await lvCall(native.lvDomainGetAutostart(this.handle))) === 1;
  }

  /** virDomainSetAutostart. */
  async setAutostart(on: boolean): Promise<void> {
    await lvCall(native.lvDomainSetAutostart(this.handle, on ? 1 : 0));
  }

  /**
   * The flags the original passes to virDomainBackupBegin: PRESERVE_SHUTDOWN_DOMAIN (0x2) when
   * the connected libvirt is ≥ 11.10.0, else 0.
   */
  async defaultBackupFlags(): Promise<number> {
    return (await this.connection.libVersion()) >= C.LIBVIRT_VERSION_PRESERVE_SHUTDOWN_DOMAIN
      ? C.VIR_DOMAIN_BACKUP_BEGIN_PRESERVE_SHUTDOWN_DOMAIN
      : 0;
  }

  /**
   * Starts a backup job (virDomainBackupBegin) with the job XML and, for full/inc, the
   * checkpoint XML (see backup-xml.ts). Without `flags`, `defaultBackupFlags()` is used.
   * A broken bitmap chain rejects with C.VIR_ERR_CHECKPOINT_INCONSISTENT (109).
   */
  async backupBegin(backupXml: string, checkpointXml: string | null, flags?: number): Promise<void> {
    const f = flags ?? (await this.defaultBackupFlags());
    await lvCall(native.lvDomainBackupBegin(this.handle, backupXml, checkpointXml, f));
  }

  /** XML of the running backup job (virDomainBackupGetXMLDesc). */
  async backupXmlDesc(flags = 0): Promise<string> {
    return lvCall(native.lvDomainBackupGetXMLDesc(this.handle, flags));
  }

  /** Aborts the running job (virDomainAbortJob); this is how a pull-mode backup ends. */
  async abortJob(): Promise<void> {
    await lvCall(native.lvDomainAbortJob(this.handle));
  }

  /** virDomainGetJobInfo. */
  async jobInfo(): Promise<JobInfo> {
    return lvCall(native.lvDomainGetJobInfo(this.handle));
  }

  /** virDomainGetJobStats (C.VIR_DOMAIN_JOB_STATS_COMPLETED, …). */
  async jobStats(flags = 0): Promise<JobStats> {
    return lvCall(native.lvDomainGetJobStats(this.handle, flags));
  }

  /** virDomainGetBlockInfo for a disk target ("sda") or source path. */
  async blockInfo(disk: string, flags = 0): Promise<BlockInfo> {
    return lvCall(native.lvDomainGetBlockInfo(this.handle, disk, flags));
  }

  /** virDomainGetBlockJobInfo: the disk's running block job, or null. */
  async blockJobInfo(disk: string, flags = 0): Promise<BlockJobInfo | null> {
    return lvCall(native.lvDomainGetBlockJobInfo(this.handle, disk, flags));
  }

  /** virDomainBlockPull: the disk's backing data copied into its top image (at most `bandwidthMiBs` MiB/s, 0: no limit), then the backing dropped. */
  async blockPull(disk: string, bandwidthMiBs = 0, flags = 0): Promise<void> {
    await lvCall(native.lvDomainBlockPull(this.handle, disk, bandwidthMiBs, flags));
  }

  /** virDomainBlockJobAbort: ends the disk's block job (what it copied stays). */
  async blockJobAbort(disk: string, flags = 0): Promise<void> {
    await lvCall(native.lvDomainBlockJobAbort(this.handle, disk, flags));
  }

  /**
   * Freezes guest filesystems through the guest agent (virDomainFSFreeze): the given
   * mountpoints, or all. Resolves with the number frozen. Without an agent: LibvirtError
   * (C.VIR_ERR_ARGUMENT_UNSUPPORTED "QEMU guest agent is not configured").
   */
  async fsFreeze(mountpoints?: readonly string[]): Promise<number> {
    return lvCall(native.lvDomainFSFreeze(this.handle, mountpoints ? [...mountpoints] : null, 0));
  }

  /** Thaws guest filesystems (virDomainFSThaw); resolves with the number thawed. */
  async fsThaw(mountpoints?: readonly string[]): Promise<number> {
    return lvCall(native.lvDomainFSThaw(this.handle, mountpoints ? [...mountpoints] : null, 0));
  }

  /**
   * Guest information from the agent (virDomainGetGuestInfo) as a flat key/value map, e.g.
   * `os.id`, `os.name`, `os.machine`, `hostname`, `fs.0.mountpoint`. `types` 0 means all.
   */
  async guestInfo(types = 0, flags = 0): Promise<LvTypedParams> {
    return lvCall(native.lvDomainGetGuestInfo(this.handle, types, flags));
  }

  /**
   * Sends a raw guest-agent JSON command (virDomainQemuAgentCommand). `timeout` in seconds or
   * C.VIR_DOMAIN_QEMU_AGENT_COMMAND_DEFAULT / _BLOCK / _NOWAIT.
   */
  async qemuAgentCommand(command: string, timeout: number = C.VIR_DOMAIN_QEMU_AGENT_COMMAND_DEFAULT, flags = 0): Promise<string> {
    return lvCall(native.lvDomainQemuAgentCommand(this.handle, command, timeout, flags));
  }

  /**
   * Sends a qemu monitor command (virDomainQemuMonitorCommand): QMP JSON, or HMP text with
   * C.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP. Resolves with the reply.
   */
  async qemuMonitorCommand(command: string, flags = 0): Promise<string> {
    return lvCall(native.lvDomainQemuMonitorCommand(this.handle, command, flags));
  }

  /** HMP shortcut for qemuMonitorCommand. */
  async hmp(command: string): Promise<string> {
    return this.qemuMonitorCommand(command, C.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP);
  }

  /**
   * Creates a checkpoint (virDomainCheckpointCreateXML). Flags: C.VIR_DOMAIN_CHECKPOINT_CREATE_
   * REDEFINE (1), _QUIESCE (2), _REDEFINE_VALIDATE (4).
   */
  async checkpointCreateXML(xml: string, flags = 0): Promise<Checkpoint> {
    return new Checkpoint(this, await lvCall(native.lvDomainCheckpointCreateXML(this.handle, xml, flags)));
  }

  /** virDomainListAllCheckpoints (C.VIR_DOMAIN_CHECKPOINT_LIST_* flags). */
  async listAllCheckpoints(flags = 0): Promise<Checkpoint[]> {
    const handles = await lvCall(native.lvDomainListAllCheckpoints(this.handle, flags));
    return handles.map((h) => new Checkpoint(this, h));
  }

  /** virDomainCheckpointLookupByName. Unknown: C.VIR_ERR_NO_DOMAIN_CHECKPOINT (103). */
  async checkpointLookupByName(name: string, flags = 0): Promise<Checkpoint> {
    return new Checkpoint(this, await lvCall(native.lvDomainCheckpointLookupByName(this.handle, name, flags)));
  }
}
