/**
 * The file operations of the layers that read and change backup sets, for local paths and
 * `s3://` paths alike (src/storage/object-path.ts): a local path goes to node:fs, an object
 * path to the bucket (src/storage/s3/store.ts). Same names and results as node:fs/promises
 * (errors with `code` ENOENT, ENOSPC…), so a layer switches by changing its import.
 */
import type { Dirent } from "node:fs";
import * as fs from "node:fs/promises";
import { openFileSource, type RandomAccessSource } from "../format/source.js";
import { isObjectPath } from "./object-path.js";
import * as objects from "./s3/store.js";

export { isObjectPath, shownPath } from "./object-path.js";

/** What a listing says of an entry (a Dirent, or an object/prefix). */
export type EntryInfo = Pick<Dirent, "name" | "isFile" | "isDirectory" | "isSymbolicLink">;
export type FileInfo = Pick<import("node:fs").Stats, "size" | "mtimeMs" | "isFile" | "isDirectory" | "isSymbolicLink">;

export function readdir(path: string): Promise<string[]> {
  return isObjectPath(path) ? objects.readdir(path) : fs.readdir(path);
}

export function readdirEntries(path: string): Promise<EntryInfo[]> {
  return isObjectPath(path) ? objects.readdirEntries(path) : fs.readdir(path, { withFileTypes: true });
}

export function stat(path: string): Promise<FileInfo> {
  return isObjectPath(path) ? objects.stat(path) : fs.stat(path);
}

/** A symbolic link itself (objects have none: as `stat`). */
export function lstat(path: string): Promise<FileInfo> {
  return isObjectPath(path) ? objects.stat(path) : fs.lstat(path);
}

export function readFile(path: string): Promise<Buffer>;
export function readFile(path: string, encoding: "utf8"): Promise<string>;
export async function readFile(path: string, encoding?: "utf8"): Promise<Buffer | string> {
  const data = isObjectPath(path) ? await objects.readFile(path) : await fs.readFile(path);
  return encoding ? data.toString(encoding) : data;
}

export async function unlink(path: string): Promise<void> {
  if (isObjectPath(path)) return objects.unlink(path);
  return fs.unlink(path);
}

/** A folder and its parents (objects: nothing to do, prefixes exist with their objects). */
export async function mkdir(path: string, _options?: { recursive: true }): Promise<void> {
  if (!isObjectPath(path)) await fs.mkdir(path, { recursive: true });
}

export async function rename(from: string, to: string): Promise<void> {
  if (isObjectPath(from) !== isObjectPath(to)) throw new Error(`Unable to move [${from}] to [${to}]: not on one storage`);
  if (isObjectPath(from)) return objects.rename(from, to);
  return fs.rename(from, to);
}

/** A file or folder with everything in it; missing is no error. */
export async function removeTree(path: string): Promise<void> {
  if (isObjectPath(path)) return objects.removeTree(path);
  return fs.rm(path, { recursive: true, force: true });
}

export function openSource(path: string): Promise<RandomAccessSource> {
  return isObjectPath(path) ? objects.openSource(path) : openFileSource(path);
}
