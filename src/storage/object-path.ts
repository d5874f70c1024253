/**
 * Object-storage locations: `s3://BUCKET/PREFIX` names a folder of a set in a bucket the way a
 * path names a directory. Paths are built with `path.join` everywhere, which folds `s3://` to
 * `s3:/`: both spellings name the same place, and `shownPath` gives the `s3://` one back.
 */
const OBJECT_PATH = /^s3:\/\/?([^/]+)(?:\/(.*))?$/;

/** `--s3-endpoint` of every command. */
export interface ObjectStorageOptions {
  s3Endpoint: string | null;
}

export interface ObjectPath {
  bucket: string;
  /** The key (a file) or key prefix without the trailing `/` (a folder); "" for the bucket itself. */
  key: string;
}

export function isObjectPath(path: string): boolean {
  return path.startsWith("s3:/");
}

/** Bucket and key of an `s3://` path; null for a local path. `.` and empty segments are dropped. */
export function parseObjectPath(path: string): ObjectPath | null {
  const m = OBJECT_PATH.exec(path);
  if (!m) return null;
  const parts = (m[2] ?? "").split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) throw new Error(`[${path}]: '..' is not allowed in an object-storage path`);
  return { bucket: m[1]!, key: parts.join("/") };
}

/** `s3://bucket/key`, whatever `path.join` made of it; local paths as they are. */
export function shownPath(path: string): string {
  const o = isObjectPath(path) ? parseObjectPath(path) : null;
  if (!o) return path;
  return o.key ? `s3://${o.bucket}/${o.key}` : `s3://${o.bucket}`;
}

/** The folder prefix of a key for listing: `a/b` → `a/b/`, `` → ``. */
export function folderPrefix(key: string): string {
  return key === "" ? "" : `${key}/`;
}
