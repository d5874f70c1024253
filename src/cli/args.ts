/**
 * Option tables of virtnbdbackup, virtnbdrestore and virtnbdmap (docs/cli.md;
 * upstream 2.47), declared with commander and parsed with argparse's
 * rules (./argparse.ts). Each `parse*Args(argv)` returns a typed object or
 * throws `UsageExit` (help/version: code 0, usage error: code 2).
 */
import os from "node:os";
import { Command } from "commander";
import {
  actionsOf,
  flagOption,
  formatHelp,
  formatUsage,
  intOption,
  parseArgparse,
  strOption,
  typedOption,
  ArgumentTypeError,
  UsageExit,
  type ParserSpec,
} from "./argparse.js";

import { FULL_VERSION } from "../report/version.js";
import type { EventOptions } from "../report/events.js";
import { NbdPortsError, parseNbdPorts, type NbdPorts } from "../connect/nbd-ports.js";

import type { BackupArgs, BackupLevel, BackupType } from "../backup/options.js";
import type { RestoreAction, RestoreArgs } from "../restore/options.js";
import type { MapArgs } from "../map/options.js";
import type { PruneArgs } from "../prune/options.js";

export { UsageExit } from "./argparse.js";
export type { BackupArgs, BackupLevel, BackupType, RestoreAction, RestoreArgs, MapArgs, PruneArgs };

export { FULL_VERSION, VERSION } from "../report/version.js";

export type CommandName = "virtnbdbackup" | "virtnbdrestore" | "virtnbdmap" | "virtnbdprune";

/** Process facts the defaults depend on; injectable for tests. */
export interface DefaultsContext {
  /** for `/var/tmp/virtnbdbackup.<pid>`; the man pages pass the placeholder `"<pid>"` */
  pid: number | string;
  /** Python's `getpass.getuser()`; `null` when it cannot be determined */
  user: string | null;
  /** `$HOME`, `undefined` when unset */
  home: string | undefined;
  /** fallback directory for the log file when HOME is unset */
  tmpdir: string;
  /** terminal width for help/usage (argparse: `COLUMNS`, then the tty, then 80) */
  columns?: number;
}

/** Python's `getpass.getuser()`: LOGNAME, USER, LNAME, USERNAME, then the passwd entry. */
export function getuser(env: NodeJS.ProcessEnv = process.env): string | null {
  for (const name of ["LOGNAME", "USER", "LNAME", "USERNAME"]) {
    const v = env[name];
    if (v) return v;
  }
  try {
    return os.userInfo().username || null;
  } catch {
    return null;
  }
}

export function defaultContext(env: NodeJS.ProcessEnv = process.env): DefaultsContext {
  return { pid: process.pid, user: getuser(env), home: env.HOME, tmpdir: os.tmpdir() };
}

function resolveCtx(ctx?: Partial<DefaultsContext>): DefaultsContext {
  return { ...defaultContext(), ...ctx };
}

// ------------------------------------------------------------ shared groups

function addRemoteOptions(cmd: Command, ctx: DefaultsContext): void {
  const session = ctx.user === "root" ? "qemu:///system" : "qemu:///session";
  cmd.addOption(strOption("-U, --uri <uri>", "Libvirt connection URI. (default: %(default)s)").default(session));
  cmd.addOption(
    strOption("--user <user>", "User to authenticate against libvirtd. (default: %(default)s)").default(null),
  );
  cmd.addOption(
    strOption(
      "--ssh-user <user>",
      "User to authenticate against remote sshd: used for remote copy of files. (default: %(default)s)",
    ).default(ctx.user),
  );
  cmd.addOption(
    intOption(
      "--ssh-port <port>",
      "Port to connect to remote sshd: used for remote copy of files. (default: %(default)s)",
    ).default(22),
  );
  cmd.addOption(
    strOption(
      "--ssh-private-key <file>",
      "Path to private key file for SSH authentication (equivalent to ssh -i). (default: %(default)s)",
    ).default(null),
  );
  cmd.addOption(
    strOption("--password <password>", "Password to authenticate against libvirtd. (default: %(default)s)").default(
      null,
    ),
  );
  cmd.addOption(
    typedOption(
      "-P, --nbd-port <port>",
      "Port used by remote NBD Service, should be unique for each started backup; or a range N-M, " +
        "or auto (10809-10909): the first port of the range that is free on the remote host. (default: %(default)s)",
      nbdPortsValue,
    ).default("10809"),
  );
  cmd.addOption(
    strOption("-I, --nbd-ip <ip>", "IP used to bind remote NBD service on (default: hostname returned by libvirtd)").default(
      "",
    ),
  );
  cmd.addOption(flagOption("--tls", "Enable and use TLS for NBD connection. (default: %(default)s)"));
  cmd.addOption(
    strOption(
      "--tls-cert <dir>",
      "Path to TLS certificates used during offline backup and restore. (default: %(default)s)",
    ).default("/etc/pki/qemu/"),
  );
}

/** `-P`: N, N-M or auto (src/connect/nbd-ports.ts); a bad value is a usage error naming it. */
function nbdPortsValue(value: string): NbdPorts {
  try {
    return parseNbdPorts(value);
  } catch (e) {
    if (e instanceof NbdPortsError) throw new ArgumentTypeError(e.message);
    throw e;
  }
}

function addLogfileOption(cmd: Command, ctx: DefaultsContext, prog: string): void {
  const home = ctx.home ?? ctx.tmpdir;
  cmd.addOption(strOption("-L, --logfile <file>", "Path to Logfile (default: %(default)s)").default(`${home}/${prog}.log`));
}

function addNocolorOption(cmd: Command): void {
  cmd.addOption(flagOption("--nocolor", "Disable colored output (default: %(default)s)"));
}

/** Ours: the run's events as JSON lines (docs/events.md). */
function addEventOptions(cmd: Command): void {
  cmd.addOption(
    flagOption("--json", "Write the run's events as JSON lines to stderr instead of log lines (docs/events.md). (default: %(default)s)"),
  );
  cmd.addOption(
    strOption("--json-file <path>", "Append the run's events as JSON lines to this file; implies --json, stderr keeps the log lines").default(null),
  );
}

/** The "Logging options" group of virtnbdrestore, virtnbdmap and virtnbdprune (virtnbdbackup's has syslog and quiet instead of a log file). */
function addLoggingGroup(cmd: Command, ctx: DefaultsContext, prog: string): void {
  cmd.optionsGroup("Logging options");
  addLogfileOption(cmd, ctx, prog);
  addNocolorOption(cmd);
  addEventOptions(cmd);
  addObjectStorageGroup(cmd);
}

/** `s3://BUCKET/PREFIX` paths (docs/s3.md): where the bucket is. */
function addObjectStorageGroup(cmd: Command): void {
  cmd.optionsGroup("Object storage options");
  cmd.addOption(
    strOption(
      "--s3-endpoint <url>",
      "S3 endpoint for s3://BUCKET/PREFIX paths, e.g. http://rgw.example:7480 (path-style addressing); default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS. Credentials and region: the AWS environment variables and profile files",
    ).default(null),
  );
}

function addDebugOptions(cmd: Command): void {
  cmd.addOption(flagOption("-v, --verbose", "Enable debug output"));
  cmd.addOption(flagOption("-V, --version", "Show version and exit"));
}

// ------------------------------------------------------------ virtnbdbackup


const BACKUP_EPILOG =
  "Examples:\n" +
  "   # full backup of domain 'webvm' with all attached disks:\n" +
  "\t%(prog)s -d webvm -l full -o /backup/\n" +
  "   # incremental backup:\n" +
  "\t%(prog)s -d webvm -l inc -o /backup/\n" +
  "   # differential backup:\n" +
  "\t%(prog)s -d webvm -l diff -o /backup/\n" +
  "   # full backup, exclude disk 'vda':\n" +
  "\t%(prog)s -d webvm -l full -x vda -o /backup/\n" +
  "   # full backup, backup only disk 'vdb':\n" +
  "\t%(prog)s -d webvm -l full -i vdb -o /backup/\n" +
  "   # full backup, compression enabled:\n" +
  "\t%(prog)s -d webvm -l full -z -o /backup/\n" +
  "   # full backup, create archive:\n" +
  "\t%(prog)s -d webvm -l full -o - > backup.zip\n" +
  "   # full backup of vm operating on remote libvirtd:\n" +
  "\t%(prog)s -U qemu+ssh://root@remotehost/system --ssh-user root -d webvm -l full -o /backup/\n";

/** Where checkpoints live and whose they are: `-C`, and our `--chain` and `--check`. */
function addCheckpointOptions(cmd: Command): void {
  cmd.addOption(
    strOption("-C, --checkpointdir <dir>", "Persistent libvirt checkpoint storage directory").default(null),
  );
  cmd.addOption(
    strOption(
      "--chain <name>",
      "Name of this target's own checkpoint chain (checkpoints virtnbdbackup.<name>.N), independent of the domain's other targets (default: virtnbdbackup.N)",
    ).default(null),
  );
  cmd.addOption(
    flagOption(
      "--check",
      "Report the health of the domain's checkpoints and bitmaps against the target's chain, one line per finding; change nothing (exit 0: healthy)",
    ),
  );
}

function backupSpec(ctx: DefaultsContext, prog = "virtnbdbackup"): ParserSpec {
  const cmd = new Command(prog).description("Backup libvirt/qemu virtual machines");
  cmd.optionsGroup("General options");
  cmd.addOption(strOption("-d, --domain <domain>", "Domain to backup").makeOptionMandatory());
  cmd.addOption(
    strOption("-l, --level <level>", "Backup level. (default: %(default)s)")
      .choices(["copy", "full", "inc", "diff", "auto"])
      .default("copy"),
  );
  cmd.addOption(
    strOption("-t, --type <type>", "Output type: stream or raw. (default: %(default)s)")
      .choices(["stream", "raw"])
      .default("stream"),
  );
  cmd.addOption(flagOption("-r, --raw", "Include full provisioned disk images in backup. (default: %(default)s)"));
  cmd.addOption(strOption("-o, --output <dir>", "Output target directory").makeOptionMandatory());
  addCheckpointOptions(cmd);
  cmd.addOption(
    strOption("--scratchdir <dir>", "Target dir for temporary scratch file. (default: %(default)s)").default(
      "/var/tmp",
    ),
  );
  cmd.addOption(flagOption("-S, --start-domain", "Start virtual machine if it is offline. (default: %(default)s)"));
  cmd.addOption(flagOption("--pause", "Pause virtual machine while starting backup job. (default: %(default)s)"));
  cmd.addOption(strOption("-i, --include <dev>", "Backup only disk with target dev name (-i vda)").default(null));
  cmd.addOption(strOption("-x, --exclude <devs>", "Exclude disk(s) with target dev name (-x vda,vdb)").default(null));
  cmd.addOption(
    strOption("-f, --socketfile <file>", "Use specified file for NBD Server socket (default: %(default)s)").default(
      `/var/tmp/virtnbdbackup.${ctx.pid}`,
    ),
  );
  cmd.addOption(flagOption("-n, --noprogress", "Disable progress bar"));
  cmd.addOption(
    intOption("-z, --compress [level]", "Compress with lz4 compression level. (default: %(default)s)")
      .preset(2)
      .default(false),
  );
  cmd.addOption(
    intOption(
      "-w, --worker <n>",
      "Amount of concurrent workers used to backup multiple disks. (default: amount of disks)",
    ).default(null),
  );
  cmd.addOption(
    strOption(
      "-F, --freeze-mountpoint <list>",
      "If qemu agent available, freeze only filesystems on specified mountpoints within virtual machine (default: all)",
    ).default(null),
  );
  cmd.addOption(
    flagOption("-e, --strict", "Change exit code if warnings occur during backup operation. (default: %(default)s)"),
  );
  cmd.addOption(
    flagOption(
      "--no-sparse-detection",
      "Skip detection of sparse ranges during incremental or differential backup. (default: %(default)s)",
    ),
  );
  cmd.addOption(intOption("-T, --threshold <bytes>", "Execute backup only if threshold is reached.").default(null));
  cmd.optionsGroup("Remote Backup options");
  addRemoteOptions(cmd, ctx);
  cmd.optionsGroup("Logging options");
  cmd.addOption(flagOption("-L, --syslog", "Additionally send log messages to syslog (default: %(default)s)"));
  cmd.addOption(flagOption("--quiet", "Disable logging to stderr (default: %(default)s)"));
  addNocolorOption(cmd);
  addEventOptions(cmd);
  cmd.addOption(
    strOption("--metrics-file <path>", "Write the run's metrics for Prometheus' node_exporter textfile collector to this file at the end").default(null),
  );
  addObjectStorageGroup(cmd);
  cmd.optionsGroup("Debug options");
  cmd.addOption(flagOption("-q, --qemu", "Use Qemu tools to query extents."));
  cmd.addOption(
    flagOption("-s, --startonly", "Only initialize backup job via libvirt, do not backup any data"),
  );
  cmd.addOption(flagOption("-k, --killonly", "Kill any running block job"));
  cmd.addOption(flagOption("-p, --printonly", "Quit after printing estimated checkpoint size."));
  addDebugOptions(cmd);
  return { command: cmd, prog, epilog: BACKUP_EPILOG, version: FULL_VERSION, columns: ctx.columns };
}

// ----------------------------------------------------------- virtnbdrestore


const RESTORE_EPILOG =
  "Examples:\n" +
  "   # Dump backup metadata:\n" +
  "\t%(prog)s -i /backup/ -o dump\n" +
  "   # Verify checksums for existing data files in backup:\n" +
  "\t%(prog)s -i /backup/ -o verify\n" +
  "   # Complete restore with all disks:\n" +
  "\t%(prog)s -i /backup/ -o /target\n" +
  "   # Complete restore, adjust config and redefine vm after restore:\n" +
  "\t%(prog)s -cD -i /backup/ -o /target\n" +
  "   # Complete restore, adjust config and redefine vm with name 'foo':\n" +
  "\t%(prog)s -cD --name foo -i /backup/ -o /target\n" +
  "   # Restore only disk 'vda':\n" +
  "\t%(prog)s -i /backup/ -o /target -d vda\n" +
  "   # Point in time restore:\n" +
  "\t%(prog)s -i /backup/ -o /target --until virtnbdbackup.2\n" +
  "   # Restore and process specific file sequence:\n" +
  "\t%(prog)s -i /backup/ -o /target --sequence vdb.full.data,vdb.inc.virtnbdbackup.1.data\n" +
  "   # Restore to remote system:\n" +
  "\t%(prog)s -U qemu+ssh://root@remotehost/system --ssh-user root -i /backup/ -o /remote_target";

function restoreSpec(ctx: DefaultsContext, prog = "virtnbdrestore"): ParserSpec {
  const cmd = new Command(prog).description("Restore virtual machine disks");
  cmd.optionsGroup("General options");
  cmd.addOption(
    strOption("-a, --action <action>", "Action to perform: (default: %(default)s)")
      .choices(["dump", "restore", "verify"])
      .default("restore"),
  );
  cmd.addOption(strOption("-i, --input <dir>", "Directory including a backup set").makeOptionMandatory());
  cmd.addOption(strOption("-o, --output <dir>", "Restore target directory").makeOptionMandatory());
  cmd.addOption(
    strOption("-u, --until <checkpoint>", "Restore only until checkpoint, point in time restore.").default(null),
  );
  cmd.addOption(
    strOption("-s, --sequence <files>", "Restore image based on specified backup files.").default(null),
  );
  cmd.addOption(
    strOption("-d, --disk <dev>", "Process only disk matching target dev name. (default: %(default)s)").default(null),
  );
  cmd.addOption(flagOption("-n, --noprogress", "Disable progress bar"));
  cmd.addOption(
    strOption("-f, --socketfile <file>", "Use specified file for NBD Server socket (default: %(default)s)").default(
      `/var/tmp/virtnbdbackup.${ctx.pid}`,
    ),
  );
  cmd.addOption(flagOption("-r, --raw", "Copy raw images as is during restore. (default: %(default)s)"));
  cmd.addOption(flagOption("-c, --adjust-config", "Adjust vm configuration during restore. (default: %(default)s)"));
  cmd.addOption(flagOption("-D, --define", "Register/define VM after restore. (default: %(default)s)"));
  cmd.addOption(
    strOption(
      "-C, --config-file <file>",
      "Name of the vm config file used for restore. (default: vmconfig.xml)",
    ).default("vmconfig.xml"),
  );
  cmd.addOption(strOption("-N, --name <name>", "Define restored domain with specified name").default(null));
  cmd.addOption(
    intOption("-B, --buffsize <bytes>", "Buffer size to use during verify (default: %(default)s)").default(8192),
  );
  cmd.addOption(flagOption("-A, --preallocate", "Preallocate restored qcow images. (default: %(default)s)"));
  cmd.addOption(flagOption("--compress", "Use compression driver during restore. (default: %(default)s)"));
  cmd.addOption(
    flagOption(
      "--to-raw",
      "Restore one disk (-d) into the block device or new raw image file named by -o instead of a qcow2 image in a directory",
    ),
  );
  cmd.addOption(flagOption("--force", "With --to-raw: write over a device that holds a partition table or filesystem"));
  cmd.addOption(
    flagOption(
      "--live",
      "Live restore: start the restored domain at once on new images in -o that read from the backup and take every guest write, copy the data while it runs; ends when every disk is copied. A first CTRL+C only warns; a second stops serving (the guest gets read errors for blocks not yet copied, its writes stay in the images); the same command resumes",
    ),
  );
  cmd.addOption(intOption("--live-bandwidth <MiB/s>", "With --live: copy at most this many MiB/s per disk, 0 for no limit (default: %(default)s)").default(0));
  cmd.optionsGroup("Remote Restore options");
  addRemoteOptions(cmd, ctx);
  addLoggingGroup(cmd, ctx, prog);
  cmd.optionsGroup("Debug options");
  addDebugOptions(cmd);
  return { command: cmd, prog, epilog: RESTORE_EPILOG, version: FULL_VERSION, columns: ctx.columns };
}

// --------------------------------------------------------------- virtnbdmap


const MAP_EPILOG =
  "Examples:\n" +
  "   # Map full backup to device /dev/nbd0:\n" +
  "\t%(prog)s -f /backup/sda.full.data\n" +
  "   # Map full backup to device /dev/nbd2:\n" +
  "\t%(prog)s -f /backup/sda.full.data -d /dev/nbd2\n" +
  "   # Map sequence of full and incremental to device /dev/nbd2:\n" +
  "\t%(prog)s -f /backup/sda.full.data,/backup/sda.inc.1.data -d /dev/nbd2\n" +
  "   # Serve full backup on 127.0.0.1:10809, export 'sda', without a device:\n" +
  "\t%(prog)s -f /backup/sda.full.data --listen-only\n";

function mapSpec(ctx: DefaultsContext, prog = "virtnbdmap"): ParserSpec {
  const cmd = new Command(prog).description("Map backup image(s) to block device");
  cmd.optionsGroup("General options");
  cmd.addOption(strOption("-f, --file <files>", "List of Backup files to map").makeOptionMandatory());
  cmd.addOption(
    strOption(
      "-b, --blocksize <size>",
      "Block size of the copy-on-write overlay that takes the writes to the mapped image (nbdkit's cow filter; rounded up to a power of two, at least 4096); the original passed it to nbdkit as the maximum request size. (default: %(default)s)",
    ).default("4096"),
  );
  cmd.addOption(strOption("-d, --device <dev>", "Target device. (default: %(default)s)").default("/dev/nbd0"));
  cmd.addOption(
    strOption("-e, --export-name <name>", "Export name passed to nbdkit. (default: %(default)s)").default("sda"),
  );
  cmd.addOption(
    strOption("-t, --threads <n>", "Amount of threads passed to nbdkit process. (default: %(default)s)").default("1"),
  );
  cmd.addOption(
    strOption(
      "-l, --listen-address <addr>",
      "IP Address for nbdkit process to listen on. (default: %(default)s)",
    ).default("127.0.0.1"),
  );
  cmd.addOption(
    strOption("-p, --listen-port <port>", "Port for nbdkit process to listen on. (default: %(default)s)").default(
      "10809",
    ),
  );
  cmd.addOption(
    flagOption(
      "--listen-only",
      "Only serve the backup image via nbdkit on listen address and port, do not map it to a block device. (default: %(default)s)",
    ),
  );
  cmd.addOption(
    strOption(
      "--cache-size <size>",
      "Disk space for decoded lz4 frames of compressed backups, so that random reads decode each frame once (in $XDG_CACHE_HOME or /var/tmp, freed when the mapping ends; 0: none). (default: %(default)s)",
    ).default("4G"),
  );
  cmd.addOption(flagOption("-n, --noprogress", "Disable progress bar"));
  addLoggingGroup(cmd, ctx, prog);
  cmd.optionsGroup("Debug options");
  cmd.addOption(flagOption("-r, --readonly", "Map image readonly (default: %(default)s)"));
  cmd.addOption(flagOption("-H, --hexdump", "Hexdump data to logfile for debugging (default: %(default)s)"));
  addDebugOptions(cmd);
  return { command: cmd, prog, epilog: MAP_EPILOG, version: FULL_VERSION, columns: ctx.columns };
}

// ------------------------------------------------------------- virtnbdprune

const PRUNE_EPILOG =
  "Examples:\n" +
  "   # show what 7 daily, 4 weekly and 6 monthly chains would keep, change nothing:\n" +
  "\t%(prog)s --keep-daily 7 --keep-weekly 4 --keep-monthly 6 --dry-run /backup/webvm\n" +
  "   # keep the 3 newest chains of every domain backed up below /backup:\n" +
  "\t%(prog)s --keep-last 3 /backup\n";

const KEEP_RULES = [
  ["last", "Keep the newest N chains"],
  ["hourly", "Keep the newest chain of each of the last N hours that have one"],
  ["daily", "Keep the newest chain of each of the last N days that have one"],
  ["weekly", "Keep the newest chain of each of the last N ISO weeks (Monday to Sunday) that have one"],
  ["monthly", "Keep the newest chain of each of the last N months that have one"],
  ["yearly", "Keep the newest chain of each of the last N years that have one"],
] as const;

function pruneSpec(ctx: DefaultsContext, prog = "virtnbdprune"): ParserSpec {
  const cmd = new Command(prog).description(
    "Remove old backup chains by keep rules (Proxmox Backup Server's prune semantics): whole chains only, never the newest",
  );
  cmd.optionsGroup("Keep options");
  for (const [rule, help] of KEEP_RULES) cmd.addOption(intOption(`--keep-${rule} <N>`, `${help}. (default: %(default)s)`).default(0));
  cmd.optionsGroup("General options");
  cmd.addOption(flagOption("-n, --dry-run", "List what would be kept and removed, and why; change nothing"));
  const session = ctx.user === "root" ? "qemu:///system" : "qemu:///session";
  cmd.addOption(
    strOption("-U, --uri <uri>", "Libvirt connection URI: the domains' backup locks and checkpoints. (default: %(default)s)").default(session),
  );
  addLoggingGroup(cmd, ctx, prog);
  cmd.optionsGroup("Debug options");
  addDebugOptions(cmd);
  return {
    command: cmd,
    prog,
    epilog: PRUNE_EPILOG,
    version: FULL_VERSION,
    columns: ctx.columns,
    positional: { dest: "paths", metavar: "PATH", help: "A backup target, zip archive, folder of zip archives, or a folder of those" },
  };
}

// -------------------------------------------------------------- public API

const SPECS: Record<CommandName, (ctx: DefaultsContext) => ParserSpec> = {
  virtnbdbackup: (ctx) => backupSpec(ctx),
  virtnbdrestore: (ctx) => restoreSpec(ctx),
  virtnbdmap: (ctx) => mapSpec(ctx),
  virtnbdprune: (ctx) => pruneSpec(ctx),
};

/** The parser spec of a command (commander Command + argparse extras). */
export function parserSpec(name: CommandName, ctx?: Partial<DefaultsContext>): ParserSpec {
  return SPECS[name](resolveCtx(ctx));
}

/** `usage: …` as printed above usage errors. */
export function usageText(name: CommandName, ctx?: Partial<DefaultsContext>): string {
  return formatUsage(parserSpec(name, ctx));
}

/** The complete `--help` output. */
export function helpText(name: CommandName, ctx?: Partial<DefaultsContext>): string {
  return formatHelp(parserSpec(name, ctx));
}

type Values = Record<string, unknown>;

/**
 * Parse, then reject what argparse accepts but the tools cannot use: an
 * explicit `--` value (`--output=--`) leaves an empty list, on which upstream
 * crashes later; we report it as a usage error instead.
 */
function parseValues(name: CommandName, argv: readonly string[], ctx?: Partial<DefaultsContext>): { v: Values; given: ReadonlySet<string> } {
  const spec = parserSpec(name, ctx);
  const { values, seen } = parseArgparse(spec, argv);
  for (const a of actionsOf(spec)) {
    if (Array.isArray(values[a.dest])) {
      throw new UsageExit(
        2,
        "",
        `${formatUsage(spec)}${spec.prog}: error: argument ${a.optionStrings.join("/")}: expected one argument\n`,
      );
    }
  }
  return { v: values, given: seen };
}
const s = (v: Values, k: string): string => v[k] as string;
const sn = (v: Values, k: string): string | null => (v[k] as string | null) ?? null;
const n = (v: Values, k: string): number => v[k] as number;
const nn = (v: Values, k: string): number | null => (v[k] as number | null) ?? null;
const b = (v: Values, k: string): boolean => v[k] === true;

/** `--json-file` implies `--json`. */
function eventOptions(v: Values): EventOptions {
  const jsonFile = sn(v, "json_file");
  return { json: b(v, "json") || jsonFile !== null, jsonFile };
}

export function parseBackupArgs(argv: readonly string[], ctx?: Partial<DefaultsContext>): BackupArgs {
  const { v, given } = parseValues("virtnbdbackup", argv, ctx);
  return {
    given,
    domain: s(v, "domain"),
    level: s(v, "level") as BackupLevel,
    type: s(v, "type") as BackupType,
    raw: b(v, "raw"),
    output: s(v, "output"),
    checkpointdir: sn(v, "checkpointdir"),
    chain: sn(v, "chain") ?? "",
    check: b(v, "check"),
    metricsFile: sn(v, "metrics_file"),
    scratchdir: s(v, "scratchdir"),
    startDomain: b(v, "start_domain"),
    pause: b(v, "pause"),
    include: sn(v, "include"),
    exclude: sn(v, "exclude"),
    socketfile: s(v, "socketfile"),
    noprogress: b(v, "noprogress"),
    compress: v.compress === false ? false : n(v, "compress"),
    worker: nn(v, "worker"),
    freezeMountpoint: sn(v, "freeze_mountpoint"),
    strict: b(v, "strict"),
    noSparseDetection: b(v, "no_sparse_detection"),
    threshold: nn(v, "threshold"),
    ...remote(v),
    syslog: b(v, "syslog"),
    quiet: b(v, "quiet"),
    nocolor: b(v, "nocolor"),
    ...eventOptions(v),
    s3Endpoint: sn(v, "s3_endpoint"),
    qemu: b(v, "qemu"),
    startonly: b(v, "startonly"),
    killonly: b(v, "killonly"),
    printonly: b(v, "printonly"),
    verbose: b(v, "verbose"),
  };
}

function remote(v: Values) {
  return {
    uri: s(v, "uri"),
    user: sn(v, "user"),
    sshUser: sn(v, "ssh_user"),
    sshPort: n(v, "ssh_port"),
    sshPrivateKey: sn(v, "ssh_private_key"),
    password: sn(v, "password"),
    nbdPorts: v["nbd_port"] as NbdPorts,
    nbdIp: s(v, "nbd_ip"),
    tls: b(v, "tls"),
    tlsCert: s(v, "tls_cert"),
  };
}

export function parseRestoreArgs(argv: readonly string[], ctx?: Partial<DefaultsContext>): RestoreArgs {
  const { v, given } = parseValues("virtnbdrestore", argv, ctx);
  return {
    given,
    action: s(v, "action") as RestoreAction,
    input: s(v, "input"),
    output: s(v, "output"),
    until: sn(v, "until"),
    sequence: sn(v, "sequence"),
    disk: sn(v, "disk"),
    noprogress: b(v, "noprogress"),
    socketfile: s(v, "socketfile"),
    raw: b(v, "raw"),
    adjustConfig: b(v, "adjust_config"),
    define: b(v, "define"),
    configFile: s(v, "config_file"),
    name: sn(v, "name"),
    buffsize: n(v, "buffsize"),
    preallocate: b(v, "preallocate"),
    compress: b(v, "compress"),
    toRaw: b(v, "to_raw"),
    live: b(v, "live"),
    liveBandwidth: n(v, "live_bandwidth"),
    force: b(v, "force"),
    ...remote(v),
    logfile: s(v, "logfile"),
    nocolor: b(v, "nocolor"),
    ...eventOptions(v),
    s3Endpoint: sn(v, "s3_endpoint"),
    verbose: b(v, "verbose"),
  };
}

export function parseMapArgs(argv: readonly string[], ctx?: Partial<DefaultsContext>): MapArgs {
  const { v, given } = parseValues("virtnbdmap", argv, ctx);
  return {
    given,
    file: s(v, "file"),
    blocksize: s(v, "blocksize"),
    device: s(v, "device"),
    exportName: s(v, "export_name"),
    threads: s(v, "threads"),
    listenAddress: s(v, "listen_address"),
    listenPort: s(v, "listen_port"),
    listenOnly: b(v, "listen_only"),
    cacheSize: s(v, "cache_size"),
    noprogress: b(v, "noprogress"),
    logfile: s(v, "logfile"),
    nocolor: b(v, "nocolor"),
    ...eventOptions(v),
    s3Endpoint: sn(v, "s3_endpoint"),
    readonly: b(v, "readonly"),
    hexdump: b(v, "hexdump"),
    verbose: b(v, "verbose"),
  };
}

export function parsePruneArgs(argv: readonly string[], ctx?: Partial<DefaultsContext>): PruneArgs {
  const { v, given } = parseValues("virtnbdprune", argv, ctx);
  const keep = { last: 0, hourly: 0, daily: 0, weekly: 0, monthly: 0, yearly: 0 };
  for (const [rule] of KEEP_RULES) {
    const count = n(v, `keep_${rule}`);
    if (count < 0) {
      const spec = parserSpec("virtnbdprune", ctx);
      throw new UsageExit(2, "", `${formatUsage(spec)}${spec.prog}: error: argument --keep-${rule}: must not be negative: ${count}\n`);
    }
    keep[rule] = count;
  }
  return {
    given,
    paths: v["paths"] as string[],
    keep,
    dryRun: b(v, "dry_run"),
    uri: s(v, "uri"),
    ...eventOptions(v),
    s3Endpoint: sn(v, "s3_endpoint"),
    logfile: s(v, "logfile"),
    nocolor: b(v, "nocolor"),
    verbose: b(v, "verbose"),
  };
}

/**
 * For bin entries: print a `UsageExit`'s text and return its exit code; other
 * errors are rethrown. `process.exitCode = handleUsageExit(e)`.
 */
export function handleUsageExit(
  e: unknown,
  out: { write(s: string): unknown } = process.stdout,
  err: { write(s: string): unknown } = process.stderr,
): number {
  if (!(e instanceof UsageExit)) throw e;
  if (e.stdout) out.write(e.stdout);
  if (e.stderr) err.write(e.stderr);
  return e.code;
}
