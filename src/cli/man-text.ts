/**
 * The hand-written parts of the man pages (./man-page.ts renders them; the options, synopsis
 * and examples come from the parser declarations in ./args.ts). Facts from docs/cli.md
 * ("Exit codes", "Defaults"), docs/backup-set.md and README.md ("Differences from the
 * original"); keep them in step.
 *
 * Markup: `code` becomes bold with every `-` a minus sign; elsewhere a `-` starting a word is
 * a minus sign, other `-` are hyphens.
 */
import type { CommandName } from "./args.js";

export interface ManText {
  /** paragraphs of DESCRIPTION */
  description: string[];
  /** extra sentences after an option's help, keyed by its long option string */
  optionNotes: Record<string, string>;
  /** EXIT STATUS: [status, meaning] */
  exitStatus: Array<[string, string]>;
  /** FILES: [path, what], the path in `code` markup */
  files: Array<[string, string]>;
  /** ENVIRONMENT: [variable, meaning] */
  environment: Array<[string, string]>;
  /** DIFFERENCES FROM THE ORIGINAL: one item each */
  differences: string[];
  /** SEE ALSO: `name(section)` */
  seeAlso: string[];
}

const COMPAT =
  "This is virtnbdbackup-ts, a re-implementation of virtnbdbackup that takes the options of " +
  "virtnbdbackup 2.47; either tool reads the other's backup sets.";

const USER_ENV: Array<[string, string]> = [
  [
    "LOGNAME, USER, LNAME, USERNAME",
    "The first one set is the user name (else the password database's entry): the default of " +
      "`--ssh-user`, and of `--uri` (`qemu:///system` for root, `qemu:///session` for anyone else).",
  ],
];

const OUTPUT_ENV: Array<[string, string]> = [
  ["COLUMNS", "Width of the `--help` and usage text (else the terminal's, else 80)."],
  ["NO_COLOR", "Log lines on standard error without colours (as `--nocolor`)."],
  ["FORCE_COLOR", "Colours on standard error even when NO_COLOR is set or standard error is not a terminal (without it, colours only on a terminal)."],
];

const HOME_ENV: Array<[string, string]> = [
  ["HOME", "The default log file `$HOME/<command>.log`; without HOME, the system's temporary directory."],
];

const REMOTE_NOTES: Record<string, string> = {
  "--uri": "The default shown is root's; for any other user it is `qemu:///session`.",
  "--ssh-user": "The default is the user name (see ENVIRONMENT), shown here for root.",
  "--nbd-port":
    "A single port is used exactly (virtnbdbackup: offline disks on the port plus the disk's " +
    "index, as in the original); a run whose port is taken fails. With a range `N-M` or " +
    "`auto` (10809-10909) each NBD server on the remote host takes the lowest port of the range " +
    "this run does not use yet, and the next one while the remote host reports it in use " +
    "(another run, another service): runs started at once never collide. The port taken is " +
    "logged. Ports outside 1-65535 are a usage error.",
};

const EVENT_NOTES: Record<string, string> = {
  "--json":
    "One JSON object per line: `run-start`, `disk-start`, `progress`, `disk-done`, `nbd-server`, " +
    "`warning`, `error`, `run-end` (with the exit status). The log file still gets the log lines; " +
    "no progress bars. Fields, exit status per command and the JSON Schema: docs/events.md and " +
    "docs/events.schema.json of virtnbdbackup-ts. An option of virtnbdbackup-ts.",
  "--json-file": "The file is appended to; it is opened before anything else, a failure is exit status 1.",
};

const LOGFILE_NOTE: Record<string, string> = {
  "--logfile": "Without HOME, the log file is in the system's temporary directory.",
};

/** After the DIFFERENCES list. */
export const README_POINTER =
  "The README of virtnbdbackup-ts has the complete table \"Differences from the original\", " +
  "with the original's behaviour next to ours.";

export const MAN_TEXT: Record<CommandName, ManText> = {
  virtnbdbackup: {
    description: [
      "virtnbdbackup backs up the disks of a libvirt/qemu domain through libvirt's backup API and NBD. " +
        "A full backup (`-l full`) saves every disk and creates a libvirt checkpoint; an incremental " +
        "backup (`-l inc`) saves what changed since the last checkpoint and creates the next one; a " +
        "differential backup (`-l diff`) saves what changed since the last full or incremental backup " +
        "without creating one; a copy (`-l copy`) saves every disk without a checkpoint. " +
        "`-l auto` is a full backup into an empty directory and an incremental otherwise; where the " +
        "checkpoint chain cannot continue (a bitmap lost or in use, a disk added or resized) it " +
        "starts a new chain in `<dir>/generation.<N>` with one warning naming the cause, and after " +
        "a run that died it continues from the last complete checkpoint.",
      "Each disk becomes one data file in the output directory: a stream in virtnbdbackup's format " +
        "holding only the allocated data (optionally lz4-compressed with `-z`), or a raw image with " +
        "`-t raw`. The domain's configuration, its boot files (loader, nvram, kernel, initrd) and " +
        "the checkpoint definitions are saved next to the data files. With `-o -` the backup is " +
        "written as a zip archive to standard output.",
      "A domain that is shut off is backed up through qemu-nbd: a full backup becomes a copy; " +
        "incremental and differential backups read the checkpoints' bitmaps from the qcow2 images. " +
        "Remote hypervisors are reached through a `qemu+ssh://` URI (`-U`) and ssh.",
      "Use virtnbdrestore(1) to restore a backup set and virtnbdmap(1) to map it to a block device. " +
        COMPAT,
    ],
    optionNotes: {
      ...REMOTE_NOTES,
      ...EVENT_NOTES,
      "--output": "`-` writes a zip archive to standard output (not to a terminal).",
      "--checkpointdir": "Default: `checkpoints` in the output directory.",
      "--socketfile": "`<pid>` is the process id; offline backups use `<socketfile>.<disk>`.",
      "--worker": "Values below 1 count as 1, above the number of disks as that number; `-o -` uses 1.",
      "--threshold": "Only for incremental and differential backups of a running domain; exit status 0 when the threshold is not reached.",
      "--strict": "The exit status is then 2 when a warning was logged (see EXIT STATUS).",
      "--chain":
        "A target made with `--chain` must always be backed up with the same name; a full backup " +
        "removes only the checkpoints of its own chain.",
      "--check":
        "Reads the target's latest generation; takes no lock, writes no log file. Leave out `-l`: " +
        "with `-l full`, `inc` or `diff` a foreign checkpoint is refused first.",
      "--quiet": "Also turns off the progress bars.",
    },
    exitStatus: [
      ["0", "Success; also `-s`, `-k`, `-p`, a `-T` threshold that was not reached, and `--check` finding nothing."],
      [
        "1",
        "An error: a refused option combination or set, a failed disk, any ERROR or CRITICAL message " +
          "logged, or the run was stopped by a signal; `--check` found a problem.",
      ],
      ["2", "A usage error; or `--strict` and at least one WARNING was logged (and no error)."],
      ["75", "Another backup of the domain is running (it holds the domain's lock); nothing was changed. Try again later."],
    ],
    files: [
      ["`<disk>.full.data`, `<disk>.copy.data`", "A full or copy backup of one disk (`<disk>` is the target dev, such as `sda`)."],
      ["`<disk>.inc.virtnbdbackup.<N>.data`", "An incremental backup up to checkpoint N (offline: `<disk>.inc.virtnbdbackup.<N>.<unix time>.data`)."],
      ["`<disk>.diff.<unix time>.data`", "A differential backup."],
      ["`<datafile>.chksum`, `<datafile>.integrity`", "Checksums of a data file, checked by virtnbdrestore(1)."],
      ["`<domain>.cpt`", "The list of checkpoints of the set, oldest first."],
      ["`checkpoints/<checkpoint>.xml`", "libvirt's definition of each checkpoint (`-C` chooses another directory)."],
      ["`vmconfig.<ident>.xml`", "The domain's configuration at each backup (`vmconfig.copy.xml` for a copy)."],
      ["`<disk>.<ident>.qcow.json`", "The qcow2 image's properties, used to create the image on restore."],
      ["`<file>.<ident>`", "Copies of the domain's loader, nvram, kernel and initrd files."],
      ["`autostart.<ident>`, `osinfo.<ident>`", "Whether the domain autostarts; the guest agent's OS information."],
      ["`backup.<level>.<MMDDYYYYHHMMSS>.log`", "The log of each run."],
      [
        "`<domain>.run.partial`",
        "Present while a run is unfinished: left behind by an interrupted or failed run, it makes the next incremental or differential backup refuse; `-l auto` continues from the last complete checkpoint.",
      ],
      ["`*.partial`", "Files being written; moved to their names when complete."],
      ["`generation.<N>/`", "A new chain `-l auto` started in the target when the old one could not continue; a complete set of its own."],
      ["`unfinished.<pid>/`", "Complete files of a checkpoint that `-l auto` dropped after the run that made it died."],
      [
        "`/run/lock/virtnbdbackup/<domain>.<hash>.lock`",
        "The lock of a domain's backups (root; others: under XDG_RUNTIME_DIR or the temporary directory).",
      ],
      ["`/var/tmp/virtnbdbackup.<pid>`", "The NBD socket of a local backup (`-f`)."],
      ["`/var/tmp`", "libvirt's scratch files during a backup of a running domain (`--scratchdir`)."],
    ],
    environment: [
      ...USER_ENV,
      ["VIRTNBDBACKUP_LOCK_DIR", "The directory of the per-domain lock files (see FILES)."],
      ["XDG_RUNTIME_DIR", "Where a user other than root keeps the lock files (`virtnbdbackup-<uid>` in it)."],
      ...OUTPUT_ENV,
    ],
    differences: [
      "A run marker `<domain>.run.partial` is written before any checkpoint or file of the set " +
        "changes and removed when everything is on disk; after an interrupted or failed run the " +
        "next incremental or differential backup refuses instead of silently missing changes.",
      "Data files are written as `.partial` files (with O_DIRECT where the file system allows), " +
        "synced, and moved into place without ever replacing an existing file.",
      "Every data file gets a `.integrity` file (checksums of each frame), which virtnbdrestore(1) checks.",
      "An offline incremental backup is named `<disk>.inc.<checkpoint>.<unix time>.data` instead " +
        "of replacing the online incremental of that checkpoint.",
      "SIGTERM, SIGHUP and SIGPIPE (also the reader of `-o -` going away) end a run like SIGINT: " +
        "the libvirt job is aborted and the exit status is 1 (an `s3://` target ignores SIGPIPE and aborts its uploads under way).",
      "`-o s3://BUCKET/PREFIX` writes the set into object storage, objects named like the files " +
        "of a directory set (multipart uploads, Content-MD5 on every part); `--s3-endpoint` or " +
        "AWS_ENDPOINT_URL names the server, credentials come from the AWS environment and profile files.",
      "A failure to save the configuration, checksums or boot files is an error (exit status 1), not a warning.",
      "An incremental backup whose chain cannot continue is refused with the cause and the fix " +
        "instead of falling back to a full-style stream; `-l auto` starts a new generation instead.",
      "`-P` also takes a port range or `auto`: a free port of the range on the remote host.",
      "Only one backup of a domain runs at a time (exit status 75 for the second); `--chain` and " +
        "`--check` are options of virtnbdbackup-ts.",
      "`-o -` to a terminal is refused.",
      "`-V` and the first log line also name this package's version.",
    ],
    seeAlso: ["virtnbdrestore(1)", "virtnbdmap(1)", "virsh(1)", "qemu-img(1)", "qemu-nbd(8)"],
  },

  virtnbdrestore: {
    description: [
      "virtnbdrestore turns a backup set written by virtnbdbackup(1) back into disk images. The " +
        "set (`-i`) is a directory, a zip archive, or a directory of zip archives. For each disk " +
        "the full backup and the incremental or differential backups after it are applied, in " +
        "the order of their checkpoints, into a new image in the `-o` directory, up to the " +
        "checkpoint given by `--until`; `--sequence` names the files instead.",
      "With `-c` the domain's configuration is adjusted to the restored images (new name, no " +
        "UUID, the new image paths) and written to the target directory; with `-D` the domain is " +
        "also defined. Boot files of the set are copied back to their original places when " +
        "nothing is there.",
      "`-a dump` (or `-o dump`) prints the metadata of every data file; `-a verify` (or " +
        "`-o verify`) checks the checksums and decodes every stream without writing anything.",
      COMPAT,
    ],
    optionNotes: {
      ...REMOTE_NOTES,
      ...LOGFILE_NOTE,
      ...EVENT_NOTES,
      "--output": "`dump` and `verify` instead of a directory are the same as `-a dump` and `-a verify`.",
      "--input":
        "A zip archive or a directory of zip archives works as well. A directory holding " +
        "`generation.<N>` folders (new chains started by `-l auto`) is read from one of them: the " +
        "one holding the `--until` checkpoint, else the newest; `-i <dir>/generation.<N>` reads that one.",
      "--define": "Implies `-c`.",
      "--socketfile": "`<pid>` is the process id.",
      "--live":
        "An option of virtnbdrestore-ts. The images are qcow2 files over the backup, served by this " +
        "process; libvirt block pulls copy the data while the domain runs. The first Ctrl-C only " +
        "warns; a second one stops serving: the guest then gets read errors for blocks not yet " +
        "copied, its writes are safe in the images, and the same command resumes. Local hypervisor only.",
    },
    exitStatus: [
      ["0", "The restore completed; a dump; a verify that found no problem."],
      ["1", "Anything failed, including a data file that could not be applied (the image is then removed)."],
      ["2", "A usage error."],
    ],
    files: [
      ["`<output>/<image>`", "The restored images, named as the original images; written as `<image>.partial` and renamed when complete. An existing file is never overwritten."],
      ["`<output>/vmconfig.xml`", "The domain configuration (`-C` chooses another name), adjusted with `-c`."],
      ["`$HOME/virtnbdrestore.log`", "The log file (`-L`)."],
      ["`/var/tmp/virtnbdbackup.<pid>`", "The NBD socket while writing an image (`-f`)."],
    ],
    environment: [...HOME_ENV, ...USER_ENV, ...OUTPUT_ENV],
    differences: [
      "A data file that is damaged or cannot be applied ends the restore with exit status 1 and " +
        "the half-written image is removed (the original exits 0).",
      "Files are ordered by the checkpoint links in their metadata, not by modification time; " +
        "gaps, duplicates and strays are refused.",
      "`.chksum` and `.integrity` files are checked while a file is applied; `verify` also decodes every stream.",
      "An incremental backup that fell back to a full one writes zeroes over older data instead of leaving it.",
      "`--until` uses `vmconfig.<until>.xml` when the set has it.",
      "`-P` also takes a port range or `auto`: a free port of the range on the remote host.",
    ],
    seeAlso: ["virtnbdbackup(1)", "virtnbdmap(1)", "virsh(1)", "qemu-img(1)"],
  },

  virtnbdmap: {
    description: [
      "virtnbdmap makes a backup available as a block device without restoring it, for instance " +
        "to copy single files or to boot the domain from it (instant recovery). The files given " +
        "with `-f` (a full backup, then incrementals) are merged into one image and served by " +
        "virtnbdmap's own NBD server (no nbdkit(1) needed); writes go into a copy-on-write overlay, the backup files are never " +
        "changed. qemu-nbd(8) attaches the image to the NBD device `-d` (the nbd kernel module " +
        "must be loaded: `modprobe nbd`).",
      "The device stays until virtnbdmap is stopped with CTRL+C, SIGTERM or SIGHUP; then it is " +
        "detached and the server stopped. While other NBD clients are connected, the first signal only " +
        "warns that what they wrote into the overlay will be lost; a second signal, or the last of " +
        "them disconnecting, stops. `--listen-only` serves the image on the `-l`/`-p` address " +
        "without a device. Compressed (lz4) sets and zip archives map as well; their decoded " +
        "frames are cached on disk (`--cache-size`), so random reads decode each frame once.",
      COMPAT,
    ],
    optionNotes: {
      ...LOGFILE_NOTE,
      ...EVENT_NOTES,
      "--file": "Separated by commas; the first must be a full backup.",
      "--blocksize":
        "The block size of the copy-on-write overlay that takes every write to the mapped image, " +
        "rounded up to a power of two, at least 4096; the original passes it to nbdkit as the " +
        "maximum request size.",
      "--threads": "No effect: the original passes it to nbdkit; our server serves every connection's requests concurrently.",
      "--listen-only": "An option of virtnbdbackup-ts.",
      "--cache-size":
        "An option of virtnbdbackup-ts. A size in bytes with an optional K, M, G or T suffix. The " +
        "scratch file is unlinked as soon as it is created and never grows beyond this size; " +
        "plain (uncompressed) sets need none.",
    },
    exitStatus: [
      ["0", "The mapping ended by a signal (SIGINT, SIGTERM, SIGHUP)."],
      ["1", "A failed check, an unreadable chain, the port in use, qemu-nbd failing."],
      ["2", "A usage error."],
    ],
    files: [
      ["`/dev/nbd0`", "The default device (`-d`)."],
      ["`$HOME/virtnbdmap.log`", "The log file (`-L`)."],
    ],
    environment: [
      ...HOME_ENV,
      ["XDG_CACHE_HOME", "Where the decoded-frame cache of a compressed set is made (an absolute path); else `/var/tmp`."],
      ...OUTPUT_ENV,
    ],
    differences: [
      "The chain is merged into one index and served by our own NBD server (no nbdkit), instead " +
        "of replaying incrementals through the device; lz4-compressed sets and zip archives map in place.",
      "`--listen-only` serves the image without a device.",
      "`-b` sets the overlay's block size instead of splitting reads into pieces of that size.",
      "SIGTERM and SIGHUP detach the device and clean up like SIGINT; with other NBD clients connected it takes a second signal.",
    ],
    seeAlso: ["virtnbdbackup(1)", "virtnbdrestore(1)", "qemu-nbd(8)"],
  },

  virtnbdprune: {
    description: [
      "virtnbdprune removes old backup chains by keep rules, with the semantics of Proxmox Backup " +
        "Server's prune applied to whole chains: a chain is a full (or copy) backup with every " +
        "incremental and differential backup that depends on it, and it counts once, at the time of " +
        "its full backup. Each PATH is a backup target (its top level and its `generation.<N>` " +
        "folders are one chain each), a zip archive, a folder of zip archives, or a folder of those " +
        "(the monthly-folder layout `/backup/<domain>/<month>/`).",
      "The chains of one domain (and one `--chain` name) are weighed together. The rules run in " +
        "the order keep-last, -hourly, -daily, -weekly, -monthly, -yearly; each keeps the newest " +
        "chain of each of its last N periods (local time; ISO weeks) that earlier rules did not " +
        "already cover. Without any keep option everything is kept. The newest chain, and a chain " +
        "a backup run writes into (or left unfinished), always stay.",
      "A domain whose backup is running (its backup lock is held) is left alone. Removed chains' " +
        "libvirt checkpoints are removed when they are provably the chain's own (same name and " +
        "creation time as the chain's saved checkpoint XML). A folder is renamed to " +
        "`.<name>.pruning` before it is removed, files go dependants first and the base last, and " +
        "every step is made durable: a prune killed at any point leaves every kept chain " +
        "restorable, and the next prune finishes the job.",
      COMPAT,
    ],
    optionNotes: {
      ...LOGFILE_NOTE,
      "--uri": "The default shown is root's; for any other user it is `qemu:///session`. Used for the per-domain backup lock and the checkpoints; prune works without libvirt (checkpoints are then left, with a warning).",
      "--dry-run": "Each chain is listed with what keeps it (`keep-daily 2026-12-04`, `the newest chain`) or why it goes.",
    },
    exitStatus: [
      ["0", "Done (or, with `--dry-run`, listed)."],
      ["1", "A chain could not be read or removed; nothing after it was removed."],
      ["2", "A usage error."],
      ["75", "A backup of some domain was running: that domain's chains were left alone; try again later (`EX_TEMPFAIL`)."],
    ],
    files: [
      ["`/run/lock/virtnbdbackup/`", "The per-domain backup locks (`$VIRTNBDBACKUP_LOCK_DIR` elsewhere)."],
      ["`$HOME/virtnbdprune.log`", "The log file (`-L`)."],
    ],
    environment: [...HOME_ENV, ...USER_ENV, ...OUTPUT_ENV, ["VIRTNBDBACKUP_LOCK_DIR", "The folder of the per-domain backup locks."]],
    differences: ["The original has no prune command; its users rotate backup folders with their own scripts."],
    seeAlso: ["virtnbdbackup(1)", "virtnbdrestore(1)"],
  },
};
