/**
 * The local Ceph RGW (S3) the object-storage tests run against: a single-node Ceph 16 cluster
 * that scripts/ceph-rgw.sh brings up (CI starts it in .ci/run; the first ensureRgw() of a test
 * process starts it when it is not up, ~3 s cold, ~0.3 s when it is).
 *
 *   const rgw = await ensureRgw();                   // { endpoint, region, accessKeyId, secretAccessKey }
 *   const s3 = s3Client(rgw);                        // path-style, settings RGW 16 needs (below)
 *   const bucket = await createTestBucket(rgw, "backup");  t.after(() => removeTestBucket(rgw, bucket));
 *   await setBucketQuota(bucket, 10 * MiB);          // effective on the next request; null lifts it
 *   await listKeys(rgw, bucket, "prefix/");          // sorted keys
 *   await listMultipartUploads(rgw, bucket, "prefix/");  // unfinished uploads: [{ key, uploadId }]
 *
 * RGW 16 (Ceph Pacific) and the current SDK, as found on this cluster:
 * - The SDK's default request checksums ("WHEN_SUPPORTED") send a streamed body (a stream, not a
 *   Buffer) as aws-chunked with a trailing x-amz-checksum-crc32 and without Content-Length; RGW 16
 *   refuses that with 411 MissingContentLength. x-amz-checksum-* headers on buffered bodies are
 *   accepted but neither verified nor returned. Content-MD5 is verified (400 BadDigest).
 * - With "Expect: 100-continue" (the SDK's default for bodies over 2 MB) RGW answers 100 before
 *   it checks the quota, then refuses and drops the connection without reading the body: the SDK
 *   sees a 403 QuotaExceeded or, more often than not, a write EPIPE (retried, then a TimeoutError).
 *   Without the header RGW reads and discards the body and the 403 arrives every time.
 * - CompleteMultipartUpload answers with an empty <ETag></ETag>; HeadObject gives the object's
 *   ETag ("<md5 of the part md5s>-<parts>").
 * - Bucket quotas are checked per request against the bucket's usage: parts of one multipart
 *   upload sent in parallel can together go past the quota.
 */
import { randomBytes } from "node:crypto";
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  ListMultipartUploadsCommand,
  ListObjectVersionsCommand,
  ListObjectsV2Command,
  S3Client,
  type S3ClientConfig,
} from "@aws-sdk/client-s3";
import { execa } from "execa";

// The pinned SDK runs on Node 20; its notice about later releases would clutter every test's output.
process.env["AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED"] ??= "true";

export const CEPH_RGW = new URL("../../scripts/ceph-rgw.sh", import.meta.url).pathname;

export interface RgwEndpoint {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

let started: Promise<RgwEndpoint> | undefined;

async function script(args: string[]): Promise<string> {
  const r = await execa(CEPH_RGW, args, { reject: false, all: true });
  if (r.exitCode !== 0) throw new Error(`scripts/ceph-rgw.sh ${args.join(" ")} failed (exit ${r.exitCode}):\n${r.all}`);
  return r.stdout;
}

/** Starts the RGW when it is not up (once per process); its endpoint and the CI user's keys. */
export function ensureRgw(): Promise<RgwEndpoint> {
  started ??= (async () => {
    await script(["start"]);
    const env = new Map<string, string>();
    for (const line of (await script(["env"])).split("\n")) {
      const m = /^export ([A-Z0-9_]+)=(.*)$/.exec(line);
      if (m) env.set(m[1]!, m[2]!);
    }
    const get = (k: string): string => {
      const v = env.get(k);
      if (!v) throw new Error(`scripts/ceph-rgw.sh env printed no ${k}`);
      return v;
    };
    return {
      endpoint: get("S3_ENDPOINT"),
      region: get("AWS_REGION"),
      accessKeyId: get("AWS_ACCESS_KEY_ID"),
      secretAccessKey: get("AWS_SECRET_ACCESS_KEY"),
    };
  })();
  started.catch(() => (started = undefined));
  return started;
}

/**
 * An S3 client for the RGW with path-style addressing and the settings RGW 16 needs (see the
 * header): checksums only where an operation requires one, no Expect: 100-continue.
 * `overrides` replace any of them (to probe the SDK's defaults).
 */
export function s3Client(rgw: RgwEndpoint, overrides: Partial<S3ClientConfig> = {}): S3Client {
  return new S3Client({
    endpoint: rgw.endpoint,
    region: rgw.region,
    credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey },
    forcePathStyle: true,
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    expectContinueHeader: false,
    ...overrides,
  });
}

/** One client per endpoint for the helpers below. */
const clients = new WeakMap<RgwEndpoint, S3Client>();
function client(rgw: RgwEndpoint): S3Client {
  let c = clients.get(rgw);
  if (!c) clients.set(rgw, (c = s3Client(rgw)));
  return c;
}

/** Creates a bucket with a unique name starting with `prefix` (lowercased); returns the name. */
export async function createTestBucket(rgw: RgwEndpoint, prefix: string): Promise<string> {
  const base = prefix.toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 30) || "vnbt";
  const name = `${base}-${process.pid}-${randomBytes(4).toString("hex")}`;
  await client(rgw).send(new CreateBucketCommand({ Bucket: name }));
  return name;
}

/**
 * Removes a bucket with everything in it: unfinished multipart uploads, objects (all versions,
 * should a test have turned versioning on). A bucket that is gone already is fine (after hooks).
 */
export async function removeTestBucket(rgw: RgwEndpoint, name: string): Promise<void> {
  const s3 = client(rgw);
  try {
    for (const u of await listMultipartUploads(rgw, name, "")) {
      await s3.send(new AbortMultipartUploadCommand({ Bucket: name, Key: u.key, UploadId: u.uploadId }));
    }
    let keyMarker: string | undefined;
    let versionIdMarker: string | undefined;
    do {
      const r = await s3.send(new ListObjectVersionsCommand({ Bucket: name, KeyMarker: keyMarker, VersionIdMarker: versionIdMarker }));
      const objects = [...(r.Versions ?? []), ...(r.DeleteMarkers ?? [])].map((v) => ({ Key: v.Key!, VersionId: v.VersionId }));
      if (objects.length > 0) {
        const d = await s3.send(new DeleteObjectsCommand({ Bucket: name, Delete: { Objects: objects, Quiet: true } }));
        if (d.Errors?.length) throw new Error(`removeTestBucket ${name}: ${d.Errors.map((e) => `${e.Key}: ${e.Code}`).join(", ")}`);
      }
      keyMarker = r.IsTruncated ? r.NextKeyMarker : undefined;
      versionIdMarker = r.IsTruncated ? r.NextVersionIdMarker : undefined;
    } while (keyMarker !== undefined);
    await s3.send(new DeleteBucketCommand({ Bucket: name }));
  } catch (e) {
    if ((e as { name?: string }).name === "NoSuchBucket") return;
    throw e;
  }
}

/**
 * Sets a bucket's size quota in bytes (null: no quota) with radosgw-admin. RGW applies it from
 * the next request on; an upload over it fails with 403 QuotaExceeded.
 */
export async function setBucketQuota(bucket: string, maxBytes: number | null): Promise<void> {
  if (maxBytes === null) {
    await script(["admin", "quota", "disable", "--quota-scope=bucket", `--bucket=${bucket}`]);
    return;
  }
  await script(["admin", "quota", "set", "--quota-scope=bucket", `--bucket=${bucket}`, `--max-size=${maxBytes}`]);
  await script(["admin", "quota", "enable", "--quota-scope=bucket", `--bucket=${bucket}`]);
}

/** The keys under `prefix`, sorted. */
export async function listKeys(rgw: RgwEndpoint, bucket: string, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const r = await client(rgw).send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of r.Contents ?? []) keys.push(o.Key!);
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token !== undefined);
  return keys.sort();
}

/** The unfinished multipart uploads under `prefix`. */
export async function listMultipartUploads(rgw: RgwEndpoint, bucket: string, prefix: string): Promise<{ key: string; uploadId: string }[]> {
  const out: { key: string; uploadId: string }[] = [];
  let keyMarker: string | undefined;
  let uploadIdMarker: string | undefined;
  do {
    const r = await client(rgw).send(
      new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }),
    );
    for (const u of r.Uploads ?? []) out.push({ key: u.Key!, uploadId: u.UploadId! });
    keyMarker = r.IsTruncated ? r.NextKeyMarker : undefined;
    uploadIdMarker = r.IsTruncated ? r.NextUploadIdMarker : undefined;
  } while (keyMarker !== undefined);
  return out;
}
