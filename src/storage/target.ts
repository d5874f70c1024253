/**
 * Where a backup run puts its files: a directory or a zip archive on stdout. Stream files are
 * written front to back through `ByteSink`, raw images at positions; nothing counts as
 * written before `commit()`.
 */
import type { ByteSink } from "../format/sink.js";

/** A target refuses to replace a file (or object) that exists. */
export class TargetExistsError extends Error {
  constructor(readonly path: string) {
    super(`Target file already exists: [${path}], won't overwrite.`);
    this.name = "TargetExistsError";
  }
}

/** A file being written. */
export interface TargetEntry {
  /** Makes the file final (durable, under its real name). */
  commit(): Promise<void>;
  /** Gives up on the file; a directory target leaves the `.partial` behind as evidence. */
  abort(): Promise<void>;
  /** Where the bytes go now (log line), e.g. `/backup/sda.full.data.partial`. */
  readonly location: string;
}

/** A stream file, written front to back. */
export interface TargetFile extends ByteSink, TargetEntry {}

/** A raw image: a file of the disk's size, data written at its offsets, the rest sparse. */
export interface TargetImage extends TargetEntry {
  /** Writes all of `data` at byte `position` (several writes may be under way). */
  writeAt(data: Uint8Array, position: number): Promise<void>;
}

export interface BackupTarget {
  /** Directory holding the set (stdout mode: the working directory). */
  readonly directory: string;
  /** True when files go into a zip archive. */
  readonly isArchive: boolean;
  createFile(name: string, options?: { replace?: boolean }): Promise<TargetFile>;
  /** A raw image of `size` bytes; absent where files can only be streams (a zip entry). */
  createImage?(name: string, size: number, options?: { replace?: boolean }): Promise<TargetImage>;
  /** A small file, whole (vmconfig, qcow.json, boot files, log). */
  putFile(name: string, data: string | Uint8Array, options?: { replace?: boolean }): Promise<void>;
  close(): Promise<void>;
}
