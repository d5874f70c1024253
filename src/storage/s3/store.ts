/**
 * A bucket seen as the file operations a backup set needs (src/storage/files.ts dispatches
 * `s3://` paths here). Folders are key prefixes: listing one gives the objects and the
 * sub-prefixes under it, and its multipart uploads still under way as `<name>.partial`: an
 * object exists only once complete (CompleteMultipartUpload is the rename of a directory
 * target), and an upload a dead run left is what a `.partial` file is in a directory.
 * Removing `<name>.partial` aborts those uploads.
 */
import { createHash } from "node:crypto";
import type { RandomAccessSource } from "../../format/source.js";
import { folderPrefix, parseObjectPath, shownPath, type ObjectPath } from "../object-path.js";
import { s3 } from "./client.js";
import { isNotFound, objectError } from "./errors.js";
import { RangedObjectSource } from "./ranged-source.js";

export interface ObjectStat {
  size: number;
  mtimeMs: number;
  isFile(): boolean;
  isDirectory(): boolean;
  isSymbolicLink(): boolean;
}

export interface ObjectEntry extends Omit<ObjectStat, "size" | "mtimeMs"> {
  name: string;
}

const PARTIAL = ".partial";

function where(path: string): ObjectPath {
  const o = parseObjectPath(path);
  if (!o) throw new Error(`not an object-storage path: ${path}`);
  return o;
}

function notFound(path: string): NodeJS.ErrnoException {
  const e: NodeJS.ErrnoException = new Error(`ENOENT: no such object or folder, [${shownPath(path)}]`);
  e.code = "ENOENT";
  return e;
}

const fileStat = (size: number, mtimeMs: number): ObjectStat => ({ size, mtimeMs, isFile: () => true, isDirectory: () => false, isSymbolicLink: () => false });
const folderStat = (): ObjectStat => ({ size: 0, mtimeMs: 0, isFile: () => false, isDirectory: () => true, isSymbolicLink: () => false });

/** Objects under `prefix` (one level with `delimiter`), every page. */
async function listObjects(bucket: string, prefix: string, delimiter: boolean): Promise<{ objects: { key: string; size: number; mtimeMs: number }[]; folders: string[] }> {
  const { sdk, client } = await s3();
  const objects: { key: string; size: number; mtimeMs: number }[] = [];
  const folders: string[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(new sdk.ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token, ...(delimiter ? { Delimiter: "/" } : {}) }));
    for (const c of page.Contents ?? []) objects.push({ key: c.Key!, size: c.Size ?? 0, mtimeMs: c.LastModified?.getTime() ?? 0 });
    for (const p of page.CommonPrefixes ?? []) folders.push(p.Prefix!);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return { objects, folders };
}

/** Multipart uploads under way whose key starts with `prefix`. */
export async function listUploads(bucket: string, prefix: string): Promise<{ key: string; uploadId: string; initiated: number }[]> {
  const { sdk, client } = await s3();
  const out: { key: string; uploadId: string; initiated: number }[] = [];
  let keyMarker: string | undefined;
  let idMarker: string | undefined;
  for (;;) {
    const page = await client.send(new sdk.ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: idMarker }));
    for (const u of page.Uploads ?? []) out.push({ key: u.Key!, uploadId: u.UploadId!, initiated: u.Initiated?.getTime() ?? 0 });
    if (!page.IsTruncated) return out;
    keyMarker = page.NextKeyMarker;
    idMarker = page.NextUploadIdMarker;
  }
}

/** Objects under a folder down to `depth` sub-folders, names relative to it (one listing, no HEADs). */
export async function listTree(path: string, depth: number): Promise<{ name: string; size: number; mtimeMs: number }[]> {
  const { bucket, key } = where(path);
  const prefix = folderPrefix(key);
  try {
    const { objects } = await listObjects(bucket, prefix, false);
    return objects
      .map((o) => ({ name: o.key.slice(prefix.length), size: o.size, mtimeMs: o.mtimeMs }))
      .filter((o) => o.name !== "" && !o.name.endsWith("/") && o.name.split("/").length <= depth + 1);
  } catch (e) {
    throw objectError(e, path, "list");
  }
}

export async function readdirEntries(path: string): Promise<ObjectEntry[]> {
  const { bucket, key } = where(path);
  const prefix = folderPrefix(key);
  let listed;
  try {
    listed = await listObjects(bucket, prefix, true);
  } catch (e) {
    throw objectError(e, path, "list");
  }
  const entries = new Map<string, ObjectEntry>();
  for (const o of listed.objects) {
    const name = o.key.slice(prefix.length);
    if (name !== "") entries.set(name, { name, ...fileStat(o.size, o.mtimeMs) });
  }
  for (const f of listed.folders) {
    const name = f.slice(prefix.length, -1);
    if (name !== "") entries.set(name, { name, ...folderStat() });
  }
  for (const u of await listUploads(bucket, prefix).catch((e) => Promise.reject(objectError(e, path, "list the uploads of")))) {
    const rest = u.key.slice(prefix.length);
    if (rest !== "" && !rest.includes("/")) entries.set(rest + PARTIAL, { name: rest + PARTIAL, ...fileStat(0, u.initiated) });
  }
  return [...entries.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

export async function readdir(path: string): Promise<string[]> {
  const entries = await readdirEntries(path);
  // A folder that does not exist lists as ENOENT, as a missing directory does.
  if (entries.length === 0 && where(path).key !== "") throw notFound(path);
  return entries.map((e) => e.name);
}

export async function stat(path: string): Promise<ObjectStat> {
  const { bucket, key } = where(path);
  const { sdk, client } = await s3();
  if (key === "") {
    try {
      await client.send(new sdk.HeadBucketCommand({ Bucket: bucket }));
      return folderStat();
    } catch (e) {
      if (isNotFound(e) || (e as { name?: string }).name === "NoSuchBucket") throw notFound(path);
      throw objectError(e, path, "look up bucket");
    }
  }
  try {
    const head = await client.send(new sdk.HeadObjectCommand({ Bucket: bucket, Key: key }));
    return fileStat(head.ContentLength ?? 0, head.LastModified?.getTime() ?? 0);
  } catch (e) {
    if (!isNotFound(e)) throw objectError(e, path, "look up");
  }
  try {
    const under = await client.send(new sdk.ListObjectsV2Command({ Bucket: bucket, Prefix: `${key}/`, MaxKeys: 1 }));
    if ((under.KeyCount ?? 0) > 0) return folderStat();
    if (key.endsWith(PARTIAL)) {
      const uploads = await listUploads(bucket, key.slice(0, -PARTIAL.length));
      const mine = uploads.find((u) => u.key === key.slice(0, -PARTIAL.length));
      if (mine) return fileStat(0, mine.initiated);
    }
  } catch (e) {
    throw objectError(e, path, "look up");
  }
  throw notFound(path);
}

export async function readFile(path: string): Promise<Buffer> {
  const { bucket, key } = where(path);
  const { sdk, client } = await s3();
  try {
    const got = await client.send(new sdk.GetObjectCommand({ Bucket: bucket, Key: key }));
    return Buffer.from(await got.Body!.transformToByteArray());
  } catch (e) {
    throw objectError(e, path, "read");
  }
}

export const contentMd5 = (data: Uint8Array): string => createHash("md5").update(data).digest("base64");

export class ObjectExistsError extends Error {}

/** A small object, whole, checked by Content-MD5. Without `replace`, an existing object is refused. */
export async function writeObject(path: string, data: string | Uint8Array, replace: boolean): Promise<void> {
  const { bucket, key } = where(path);
  const body = typeof data === "string" ? Buffer.from(data) : data;
  if (!replace && (await exists(path))) throw new ObjectExistsError(path);
  const { sdk, client } = await s3();
  try {
    await client.send(new sdk.PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentMD5: contentMd5(body), ContentLength: body.length }));
  } catch (e) {
    throw objectError(e, path, "write");
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw e;
  }
}

/** Removes an object; `<name>.partial` also aborts the uploads of `<name>` under way. Missing: no error. */
export async function unlink(path: string): Promise<void> {
  const { bucket, key } = where(path);
  const { sdk, client } = await s3();
  try {
    if (key.endsWith(PARTIAL)) {
      const base = key.slice(0, -PARTIAL.length);
      for (const u of await listUploads(bucket, base)) {
        if (u.key === base) await client.send(new sdk.AbortMultipartUploadCommand({ Bucket: bucket, Key: base, UploadId: u.uploadId }));
      }
    }
    await client.send(new sdk.DeleteObjectCommand({ Bucket: bucket, Key: key }));
  } catch (e) {
    if (!isNotFound(e)) throw objectError(e, path, "remove");
  }
}

/** Every object and upload under a folder (or the one object). */
export async function removeTree(path: string): Promise<void> {
  const { bucket, key } = where(path);
  const { sdk, client } = await s3();
  try {
    const prefix = folderPrefix(key);
    for (const u of await listUploads(bucket, prefix)) await client.send(new sdk.AbortMultipartUploadCommand({ Bucket: bucket, Key: u.key, UploadId: u.uploadId }));
    const { objects } = await listObjects(bucket, prefix, false);
    for (let i = 0; i < objects.length; i += 1000) {
      const batch = objects.slice(i, i + 1000).map((o) => ({ Key: o.key }));
      await client.send(new sdk.DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: batch, Quiet: true } }));
    }
    if (key !== "") await client.send(new sdk.DeleteObjectCommand({ Bucket: bucket, Key: key }));
  } catch (e) {
    throw objectError(e, path, "remove");
  }
}

/** Server-side copy, then delete: a rename. Objects over 5 GiB are copied in parts. */
export async function rename(from: string, to: string): Promise<void> {
  const src = where(from);
  const dst = where(to);
  const { sdk, client } = await s3();
  try {
    const size = (await stat(from)).size;
    const source = `${src.bucket}/${encodeURIComponent(src.key).replace(/%2F/g, "/")}`;
    if (size <= 5 * 1024 ** 3) {
      await client.send(new sdk.CopyObjectCommand({ Bucket: dst.bucket, Key: dst.key, CopySource: source }));
    } else {
      await copyInParts(source, dst, size);
    }
    await client.send(new sdk.DeleteObjectCommand({ Bucket: src.bucket, Key: src.key }));
  } catch (e) {
    throw objectError(e, from, `move to [${shownPath(to)}]`);
  }
}

async function copyInParts(source: string, dst: ObjectPath, size: number): Promise<void> {
  const { sdk, client } = await s3();
  const part = 1024 ** 3;
  const { UploadId } = await client.send(new sdk.CreateMultipartUploadCommand({ Bucket: dst.bucket, Key: dst.key }));
  try {
    const parts = [];
    for (let n = 1, at = 0; at < size; n++, at += part) {
      const end = Math.min(size, at + part) - 1;
      const r = await client.send(new sdk.UploadPartCopyCommand({ Bucket: dst.bucket, Key: dst.key, UploadId, PartNumber: n, CopySource: source, CopySourceRange: `bytes=${at}-${end}` }));
      parts.push({ PartNumber: n, ETag: r.CopyPartResult!.ETag! });
    }
    await client.send(new sdk.CompleteMultipartUploadCommand({ Bucket: dst.bucket, Key: dst.key, UploadId, MultipartUpload: { Parts: parts } }));
  } catch (e) {
    await client.send(new sdk.AbortMultipartUploadCommand({ Bucket: dst.bucket, Key: dst.key, UploadId })).catch(() => undefined);
    throw e;
  }
}

export async function openSource(path: string): Promise<RandomAccessSource> {
  const st = await stat(path);
  if (!st.isFile()) throw notFound(path);
  return new RangedObjectSource(where(path), shownPath(path), st.size);
}
