/**
 * The machine that holds the disks: this one, or a remote hypervisor reached over ssh.
 * Everything that touches the hypervisor's files or runs its qemu tools goes through here,
 * so remote backups and restores plug in without changes to the callers.
 */

export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** A long-running process on the host (qemu-nbd). */
export interface HostProcess {
  readonly pid: number | undefined;
  /** Resolves with the exit code when the process ends. */
  readonly exited: Promise<number>;
  /** What the process wrote to stderr so far (for error messages). */
  stderrText(): string;
  kill(signal?: NodeJS.Signals): void;
}

export interface Host {
  readonly remote: boolean;
  /** Host name for messages. */
  readonly name: string;
  run(command: string, args: readonly string[]): Promise<CommandResult>;
  spawn(command: string, args: readonly string[]): HostProcess;
  exists(path: string): Promise<boolean>;
  readFile(path: string): Promise<Buffer>;
  /** Writes a whole file (never used for backup data). */
  writeFile(path: string, data: string | Uint8Array): Promise<void>;
  copyFileTo(localPath: string, hostPath: string): Promise<void>;
  mkdir(path: string): Promise<void>;
  /** Renames within the host; fails if `to` exists (never replaces). */
  moveNoReplace(from: string, to: string): Promise<void>;
  remove(path: string): Promise<void>;
  close(): Promise<void>;
}
