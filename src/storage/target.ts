/**
 * Where a backup run puts its files: a directory or a zip archive on stdout. Data files are
 * streamed through `ByteSink`; nothing counts as written before `commit()`.
 */
import type { ByteSink } from "../format/sink.js";

export interface TargetFile extends ByteSink {
  /** Makes the file final (durable, under its real name). */
  commit(): Promise<void>;
  /** Gives up on the file; a directory target leaves the `.partial` behind as evidence. */
  abort(): Promise<void>;
  /** Where the bytes go now (log line), e.g. `/backup/sda.full.data.partial`. */
  readonly location: string;
}

export interface BackupTarget {
  /** Directory holding the set (stdout mode: the working directory). */
  readonly directory: string;
  /** True when files go into a zip archive. */
  readonly isArchive: boolean;
  createFile(name: string, options?: { replace?: boolean }): Promise<TargetFile>;
  /** A small file, whole (vmconfig, qcow.json, boot files, log). */
  putFile(name: string, data: string | Uint8Array, options?: { replace?: boolean }): Promise<void>;
  close(): Promise<void>;
}
