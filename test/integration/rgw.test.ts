/**
 * The local Ceph RGW the object-storage tests rely on (test/helpers/rgw.ts, scripts/ceph-rgw.sh):
 * buckets, multipart uploads, ranged reads, Content-MD5, immediate bucket quotas, clean removal.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import {
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import {
  createTestBucket,
  ensureRgw,
  listKeys,
  listMultipartUploads,
  removeTestBucket,
  s3Client,
  setBucketQuota,
  type RgwEndpoint,
} from "../helpers/rgw.js";

const MiB = 1024 * 1024;
const sha256 = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

async function body(s3: S3Client, bucket: string, key: string, range?: string): Promise<Buffer> {
  const r = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: range }));
  return Buffer.from(await r.Body!.transformToByteArray());
}

/** The error a promise rejects with. */
async function rejection(p: Promise<unknown>): Promise<{ name: string; Code?: string; $metadata?: { httpStatusCode?: number } }> {
  try {
    await p;
  } catch (e) {
    return e as { name: string };
  }
  assert.fail("expected a rejection");
}

describe("local Ceph RGW (S3)", () => {
  let rgw: RgwEndpoint;
  let s3: S3Client;
  const buckets: string[] = [];
  const bucket = async (prefix: string): Promise<string> => {
    const b = await createTestBucket(rgw, prefix);
    buckets.push(b);
    return b;
  };

  before(async () => {
    rgw = await ensureRgw();
    s3 = s3Client(rgw);
  });
  after(async () => {
    for (const b of buckets) await removeTestBucket(rgw, b);
    s3?.destroy();
  });

  it("ensureRgw is idempotent and gives the CI user's endpoint", async () => {
    assert.deepEqual(await ensureRgw(), rgw);
    assert.match(rgw.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(rgw.accessKeyId, "VNBDCIACCESSKEY00001");
    const r = await s3.send(new ListBucketsCommand({}));
    assert.equal(r.$metadata.httpStatusCode, 200);
  });

  it("a 40 MiB multipart upload round-trips; ranged GET; streamed PutObject; Content-MD5 is checked", async () => {
    const b = await bucket("rgw-roundtrip");
    await s3.send(new HeadBucketCommand({ Bucket: b }));
    const data = randomBytes(40 * MiB);
    const up = new Upload({ client: s3, params: { Bucket: b, Key: "dir/big", Body: data }, partSize: 8 * MiB, queueSize: 4 });
    await up.done();
    // (RGW 16 answers CompleteMultipartUpload with an empty <ETag/>; HeadObject has it.)
    const head = await s3.send(new HeadObjectCommand({ Bucket: b, Key: "dir/big" }));
    assert.match(head.ETag ?? "", /^"[0-9a-f]{32}-5"$/, "a multipart ETag (5 parts)");
    assert.equal(head.ContentLength, data.length);
    assert.equal(sha256(await body(s3, b, "dir/big")), sha256(data));
    assert.deepEqual(await body(s3, b, "dir/big", `bytes=${10 * MiB - 3}-${10 * MiB + 4}`), data.subarray(10 * MiB - 3, 10 * MiB + 5));
    assert.deepEqual(await body(s3, b, "dir/big", "bytes=-7"), data.subarray(data.length - 7));

    // A stream body of known length (aws-chunked with a trailing checksum under the SDK's defaults,
    // which RGW 16 refuses).
    const small = randomBytes(100_000);
    await s3.send(new PutObjectCommand({ Bucket: b, Key: "dir/streamed", Body: Readable.from([small]), ContentLength: small.length }));
    assert.deepEqual(await body(s3, b, "dir/streamed"), small);

    const wrongMd5 = createHash("md5").update("something else").digest("base64");
    const e = await rejection(s3.send(new PutObjectCommand({ Bucket: b, Key: "dir/md5", Body: small, ContentMD5: wrongMd5 })));
    assert.equal(e.name, "BadDigest");
    assert.equal(e.$metadata?.httpStatusCode, 400);
    const mp = await s3.send(new CreateMultipartUploadCommand({ Bucket: b, Key: "dir/md5" }));
    const part = randomBytes(5 * MiB);
    const ep = await rejection(
      s3.send(new UploadPartCommand({ Bucket: b, Key: "dir/md5", UploadId: mp.UploadId, PartNumber: 1, Body: part, ContentMD5: wrongMd5 })),
    );
    assert.equal(ep.name, "BadDigest");

    assert.deepEqual(await listKeys(rgw, b, "dir/"), ["dir/big", "dir/streamed"]);
    assert.deepEqual(await listMultipartUploads(rgw, b, "dir/"), [{ key: "dir/md5", uploadId: mp.UploadId }]);
    assert.deepEqual(await listKeys(rgw, b, "other/"), []);
  });

  it("a 10 MiB bucket quota makes a 20 MiB upload fail at once with 403 QuotaExceeded; lifting it works at once", async () => {
    const b = await bucket("rgw-quota");
    await setBucketQuota(b, 10 * MiB);
    const data = randomBytes(20 * MiB);

    const e = await rejection(s3.send(new PutObjectCommand({ Bucket: b, Key: "q/single", Body: data })));
    assert.equal(e.name, "QuotaExceeded");
    assert.equal(e.Code, "QuotaExceeded");
    assert.equal(e.$metadata?.httpStatusCode, 403);

    // Multipart, one part at a time: parts 1 and 2 fit (10 MiB), part 3 does not. (Parts in
    // parallel are each checked against the usage before the others: they could all pass.)
    const up = new Upload({ client: s3, params: { Bucket: b, Key: "q/multi", Body: data }, partSize: 5 * MiB, queueSize: 1 });
    const em = await rejection(up.done());
    assert.equal(em.name, "QuotaExceeded");
    assert.equal(em.$metadata?.httpStatusCode, 403);
    assert.deepEqual(await listMultipartUploads(rgw, b, ""), [], "the failed upload was aborted");
    assert.deepEqual(await listKeys(rgw, b, ""), []);

    // Under the quota.
    await s3.send(new PutObjectCommand({ Bucket: b, Key: "q/fits", Body: data.subarray(0, 6 * MiB) }));
    const e2 = await rejection(s3.send(new PutObjectCommand({ Bucket: b, Key: "q/over", Body: data.subarray(0, 6 * MiB) })));
    assert.equal(e2.name, "QuotaExceeded");

    await setBucketQuota(b, null);
    await s3.send(new PutObjectCommand({ Bucket: b, Key: "q/single", Body: data }));
    assert.deepEqual(await listKeys(rgw, b, "q/"), ["q/fits", "q/single"]);
  });

  it("removeTestBucket removes objects, unfinished uploads and the bucket", async () => {
    const b = await createTestBucket(rgw, "rgw-remove");
    for (let i = 0; i < 3; i++) await s3.send(new PutObjectCommand({ Bucket: b, Key: `k/${i}`, Body: randomBytes(1000) }));
    const mp = await s3.send(new CreateMultipartUploadCommand({ Bucket: b, Key: "k/unfinished" }));
    await s3.send(new UploadPartCommand({ Bucket: b, Key: "k/unfinished", UploadId: mp.UploadId, PartNumber: 1, Body: randomBytes(5 * MiB) }));
    await removeTestBucket(rgw, b);
    const e = await rejection(s3.send(new HeadBucketCommand({ Bucket: b })));
    assert.equal(e.$metadata?.httpStatusCode, 404);
    const all = await s3.send(new ListBucketsCommand({}));
    assert.ok(!all.Buckets?.some((x) => x.Name === b));
    await removeTestBucket(rgw, b); // gone already: fine
  });
});
