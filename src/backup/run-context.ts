/** The state a backup run's phases share (src/backup/backup-run.ts runs them in order). */
import type { Level } from "../backupset/layout.js";
import type { Hypervisor } from "../connect/session.js";
import type { Connection } from "../libvirt/connection.js";
import type { NbdPortPool } from "../connect/nbd-ports.js";
import type { SelectedDisk } from "../libvirt/disk-selection.js";
import type { Domain } from "../libvirt/domain.js";
import type { DomainXml } from "../libvirt/domain-xml.js";
import type { Logger } from "../report/log.js";
import type { CheckpointPlan } from "./checkpoints.js";
import type { Cleanup } from "./interruption.js";
import type { BackupArgs } from "./options.js";
import type { RunMarker } from "./run-marker.js";
import type { GivenLevel, TargetDirState } from "./target-dir.js";

export interface BackupIO {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
}

/** A refusal: the lines to log as errors, exit 1. */
export class BackupRefusal extends Error {
  readonly lines: string[];
  constructor(...lines: string[]) {
    super(lines[0]);
    this.lines = lines;
  }
}

/** Where a run writes, decided before logging starts. */
export interface RunPlace {
  /** `-o -`: a zip archive on stdout; checkpoints and the log stay in the working directory. */
  stdoutMode: boolean;
  /** The target directory as given (`-o`). */
  target: string;
  /** The generation of the target written into: 1 is the target itself, N ≥ 2 `generation.<N>` (docs/backup-set.md, "Generations"). */
  generation: number;
  /** Where this run's set lives: the target or its generation folder. */
  outDir: string;
  checkpointDir: string;
  cptPath: string;
  /** `--chain`: "" for the default checkpoint names. */
  chain: string;
}

/** What a run reports beyond its exit code (`--metrics-file`). */
export interface RunStats {
  /** Disk data saved. */
  bytes: number;
}

/** What the phases after connecting share. */
export interface RunContext extends RunPlace, Hypervisor {
  args: BackupArgs;
  io: BackupIO;
  log: Logger;
  conn: Connection;
  cleanup: Cleanup;
  noprogress: boolean;
  compressLevel: number | null;
  dirState: TargetDirState;
  /** The run marker of a run that died (auto heals it: src/backup/unfinished-run.ts). */
  deadRun: RunMarker | null;
  stats: RunStats;
  /** `-P` for this run's NBD servers on a remote hypervisor (src/connect/nbd-ports.ts). */
  nbdPorts: NbdPortPool;
  /**
   * The TCP port of this run's NBD server on the hypervisor once one listens: the libvirt job's
   * (online), or the first disk's qemu-nbd (offline); null for local runs and before.
   */
  nbdPort: number | null;
  /**
   * The job's scratch directory being made on the hypervisor, started as soon as it is reached
   * (remote: an ssh round trip or three, beside the domain checks); null for `--check` and `-k`.
   */
  scratchDirReady: Promise<void> | null;
}

/** The domain as the run found it (and started it, with -S). */
export interface DomainState {
  domain: Domain;
  /** guest agent information, for the osinfo file */
  osinfo: Record<string, unknown> | null;
  /** libvirt's "not configured" to the guest-info call: the domain has no agent channel (job.ts tries no freeze) */
  noGuestAgent: string | null;
  offline: boolean;
  /** -S started the domain paused (it must not be paused again for the job) */
  startedPaused: boolean;
  xml: string;
  domXml: DomainXml;
  /** the level asked for, `copy` for an offline `full` */
  givenLevel: GivenLevel;
}

/** What the checks decided: the disks, the level, the set's checkpoints. */
export interface Preflight extends DomainState {
  disks: SelectedDisk[];
  level: Level;
  /** the checkpoint names in `<domain>.cpt` */
  cpt: string[];
  /** The index a full's checkpoint gets: 0, or after every index this chain used before in the target (a new generation). */
  firstIndex: number;
  /** This run starts a new generation of the target: the old chain's checkpoints go (src/backup/generation.ts). */
  startsNewGeneration: boolean;
  workers: number;
}

/** The checkpoint a run creates or builds on, and the names its files get. */
export interface RunCheckpoint {
  plan: CheckpointPlan;
  level: Level;
  ident: string;
}

/** Set once checkpoints or files of the set may have changed: a failure then keeps the run marker. */
export interface SetChanges {
  setChanged: boolean;
}
