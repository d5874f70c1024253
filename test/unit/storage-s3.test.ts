/**
 * The object-storage layer against an in-memory fake of the S3 calls it makes (the real server,
 * Ceph RGW, is in test/integration/s3-*.test.ts): paths, multipart writing (parts in flight
 * bounded, Content-MD5 on every part, a failed part aborts the upload), uploads under way
 * listed as `.partial`, ranged reads through the bounded block cache.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import * as sdk from "@aws-sdk/client-s3";
import { folderPrefix, parseObjectPath, shownPath } from "../../src/storage/object-path.js";
import { useS3Client } from "../../src/storage/s3/client.js";
import { MultipartFile, partSizeOf } from "../../src/storage/s3/multipart-file.js";
import { objectCacheBytes, setObjectCacheBytes } from "../../src/storage/s3/ranged-source.js";
import { BufferPool } from "../../src/util/buffer-pool.js";
import * as store from "../../src/storage/s3/store.js";

interface Upload {
  key: string;
  parts: Map<number, Buffer>;
}

/** The S3 calls of src/storage/s3, in memory; `partDelayMs` keeps parts under way a while. */
class FakeS3 {
  objects = new Map<string, Buffer>();
  uploads = new Map<string, Upload>();
  underWay = 0;
  mostUnderWay = 0;
  failPart: number | null = null;
  partDelayMs = 2;
  private nextId = 0;

  async send(cmd: { constructor: { name: string }; input: Record<string, unknown> }): Promise<unknown> {
    const i = cmd.input as Record<string, any>;
    const key = `${i["Bucket"]}/${i["Key"]}`;
    switch (cmd.constructor.name) {
      case "CreateMultipartUploadCommand": {
        const id = `u${this.nextId++}`;
        this.uploads.set(id, { key, parts: new Map() });
        return { UploadId: id };
      }
      case "UploadPartCommand": {
        this.underWay++;
        this.mostUnderWay = Math.max(this.mostUnderWay, this.underWay);
        try {
          await new Promise((r) => setTimeout(r, this.partDelayMs));
          const body = Buffer.from(i["Body"] as Uint8Array);
          if (this.failPart === i["PartNumber"]) throw Object.assign(new Error("QuotaExceeded"), { name: "QuotaExceeded", $metadata: { httpStatusCode: 403 } });
          assert.equal(i["ContentMD5"], createHash("md5").update(body).digest("base64"), "Content-MD5 of the part");
          this.uploads.get(i["UploadId"])!.parts.set(i["PartNumber"], body);
          return { ETag: `"${i["PartNumber"]}"` };
        } finally {
          this.underWay--;
        }
      }
      case "CompleteMultipartUploadCommand": {
        const u = this.uploads.get(i["UploadId"])!;
        const parts = (i["MultipartUpload"].Parts as { PartNumber: number }[]).map((p) => u.parts.get(p.PartNumber)!);
        this.objects.set(key, Buffer.concat(parts));
        this.uploads.delete(i["UploadId"]);
        return {};
      }
      case "AbortMultipartUploadCommand":
        this.uploads.delete(i["UploadId"]);
        return {};
      case "PutObjectCommand":
        this.objects.set(key, Buffer.from(i["Body"] as Uint8Array));
        return {};
      case "HeadObjectCommand": {
        const o = this.objects.get(key);
        if (!o) throw Object.assign(new Error("NotFound"), { name: "NotFound", $metadata: { httpStatusCode: 404 } });
        return { ContentLength: o.length, LastModified: new Date(0) };
      }
      case "GetObjectCommand": {
        const o = this.objects.get(key);
        if (!o) throw Object.assign(new Error("NoSuchKey"), { name: "NoSuchKey", $metadata: { httpStatusCode: 404 } });
        const m = /^bytes=(\d+)-(\d+)$/.exec((i["Range"] as string | undefined) ?? "");
        const body = m ? o.subarray(Number(m[1]), Number(m[2]) + 1) : o;
        return { Body: Object.assign((async function* () { yield body.subarray(0, 1000); yield body.subarray(1000); })(), { transformToByteArray: async () => body }) };
      }
      case "ListObjectsV2Command": {
        const prefix = `${i["Bucket"]}/${i["Prefix"] ?? ""}`;
        const contents: { Key: string; Size: number }[] = [];
        const folders = new Set<string>();
        for (const [k, v] of this.objects) {
          if (!k.startsWith(prefix)) continue;
          const rest = k.slice(prefix.length);
          if (i["Delimiter"] && rest.includes("/")) folders.add(`${i["Prefix"] ?? ""}${rest.slice(0, rest.indexOf("/") + 1)}`);
          else contents.push({ Key: k.slice(`${i["Bucket"]}/`.length), Size: v.length });
        }
        const max = (i["MaxKeys"] as number | undefined) ?? 1000;
        return { Contents: contents.slice(0, max), CommonPrefixes: [...folders].map((Prefix) => ({ Prefix })), KeyCount: Math.min(max, contents.length + folders.size), IsTruncated: false };
      }
      case "ListMultipartUploadsCommand": {
        const prefix = `${i["Bucket"]}/${i["Prefix"] ?? ""}`;
        const Uploads = [...this.uploads].filter(([, u]) => u.key.startsWith(prefix)).map(([UploadId, u]) => ({ Key: u.key.slice(`${i["Bucket"]}/`.length), UploadId }));
        return { Uploads, IsTruncated: false };
      }
      case "DeleteObjectCommand":
        this.objects.delete(key);
        return {};
      default:
        throw new Error(`fake S3: ${cmd.constructor.name} not faked`);
    }
  }
}

function withFake(): FakeS3 {
  const fake = new FakeS3();
  useS3Client({ sdk, client: fake as unknown as sdk.S3Client });
  return fake;
}

test("object paths: s3:// and the s3:/ of path.join name one place; '..' refused", () => {
  assert.deepEqual(parseObjectPath("s3://b/vm/x"), { bucket: "b", key: "vm/x" });
  assert.deepEqual(parseObjectPath("s3:/b/vm//./x/"), { bucket: "b", key: "vm/x" });
  assert.deepEqual(parseObjectPath("s3://b"), { bucket: "b", key: "" });
  assert.equal(parseObjectPath("/backup/vm"), null);
  assert.equal(shownPath("s3:/b/vm/sda.full.data"), "s3://b/vm/sda.full.data");
  assert.equal(shownPath("/backup/vm"), "/backup/vm");
  assert.equal(folderPrefix(""), "");
  assert.equal(folderPrefix("a/b"), "a/b/");
  assert.throws(() => parseObjectPath("s3://b/a/../c"), /'\.\.' is not allowed/);
});

test("part sizes: 8 MiB first, growing to 64 MiB; 10 000 parts hold ~490 GiB", () => {
  assert.equal(partSizeOf(1), 8 << 20);
  assert.equal(partSizeOf(1001), 16 << 20);
  assert.equal(partSizeOf(2001), 32 << 20);
  assert.equal(partSizeOf(10_000), 64 << 20);
  let total = 0;
  for (let n = 1; n <= 10_000; n++) total += partSizeOf(n);
  assert.ok(total > 480 * 2 ** 30 && total < 500 * 2 ** 30, `${total / 2 ** 30} GiB`);
});

test("a multipart file: odd writes land in order, parts under way never exceed the bound, each with its Content-MD5; nothing exists before commit", async () => {
  const fake = withFake();
  const file = await MultipartFile.create("b", "set/sda.full.data", { inFlight: 2, partSize: () => 64 * 1024 });
  const data = randomBytes(1_000_003);
  const writes: Promise<void>[] = [];
  for (let at = 0; at < data.length; ) {
    const n = Math.min(data.length - at, 1 + ((at * 7919) % 50_000));
    writes.push(file.write(data.subarray(at, at + n)));
    at += n;
  }
  await Promise.all(writes);
  assert.equal(fake.objects.has("b/set/sda.full.data"), false, "no object before commit");
  assert.deepEqual((await store.readdirEntries("s3://b/set")).map((e) => e.name), ["sda.full.data.partial"], "the upload lists as .partial");
  await file.commit();
  assert.ok(fake.mostUnderWay <= 2, `parts under way at once: ${fake.mostUnderWay}`);
  assert.ok(fake.mostUnderWay >= 2, "parts do go up while the next fills");
  assert.ok(fake.objects.get("b/set/sda.full.data")!.equals(data));
  assert.equal(fake.uploads.size, 0);
  useS3Client(null);
});

test("part buffers come from one pool for every upload: several files at once stay within its budget, and every buffer goes back", async () => {
  const fake = withFake();
  const pool = BufferPool.budget(256 * 1024);
  const files = await Promise.all([0, 1, 2].map((i) => MultipartFile.create("b", `set/sd${i}.full.data`, { inFlight: 3, partSize: () => 64 * 1024, pool })));
  let most = 0;
  await Promise.all(
    files.map(async (file) => {
      for (let k = 0; k < 24; k++) {
        await file.write(randomBytes(40 * 1024));
        most = Math.max(most, pool.bytesInUse);
      }
      await file.commit();
    }),
  );
  assert.ok(most <= 256 * 1024, `pool bytes in use: ${most}`);
  assert.equal(pool.bytesInUse, 0, "every part buffer was released");
  assert.equal(fake.objects.size, 3);
  for (const o of fake.objects.values()) assert.equal(o.length, 24 * 40 * 1024);
  useS3Client(null);
});

test("a failed part: the write or commit fails naming the object, the upload is aborted, no object", async () => {
  const fake = withFake();
  fake.failPart = 3;
  const file = await MultipartFile.create("b", "set/sda.full.data", { inFlight: 2, partSize: () => 64 * 1024 });
  const err = await (async () => {
    try {
      for (let i = 0; i < 20; i++) await file.write(randomBytes(64 * 1024));
      await file.commit();
    } catch (e) {
      await file.abort();
      return e as NodeJS.ErrnoException;
    }
    return null;
  })();
  assert.ok(err, "the file failed");
  assert.match(err.message, /^Unable to upload part 3 of \[s3:\/\/b\/set\/sda\.full\.data\]: QuotaExceeded \(HTTP 403\)/);
  assert.equal(err.code, "ENOSPC");
  assert.equal(fake.objects.size, 0);
  assert.equal(fake.uploads.size, 0, "the upload was aborted");
  useS3Client(null);
});

test("store: folders from prefixes, removing a .partial aborts its upload, missing objects are ENOENT", async () => {
  const fake = withFake();
  await store.writeObject("s3://b/t/vm.cpt", "[]", false);
  await store.writeObject("s3://b/t/checkpoints/virtnbdbackup.0.xml", "<x/>", false);
  await assert.rejects(store.writeObject("s3://b/t/vm.cpt", "[1]", false), store.ObjectExistsError);
  await MultipartFile.create("b", "t/sda.inc.virtnbdbackup.1.data");
  const entries = await store.readdirEntries("s3://b/t");
  assert.deepEqual(entries.map((e) => [e.name, e.isDirectory()]), [["checkpoints", true], ["sda.inc.virtnbdbackup.1.data.partial", false], ["vm.cpt", false]]);
  assert.ok((await store.stat("s3://b/t/checkpoints")).isDirectory());
  await store.unlink("s3://b/t/sda.inc.virtnbdbackup.1.data.partial");
  assert.equal(fake.uploads.size, 0);
  await assert.rejects(store.stat("s3://b/t/none"), (e: NodeJS.ErrnoException) => e.code === "ENOENT");
  await assert.rejects(store.readFile("s3://b/t/none"), (e: NodeJS.ErrnoException) => e.code === "ENOENT" && /\[s3:\/\/b\/t\/none\]/.test(e.message));
  assert.deepEqual((await store.listTree("s3:/b/t", 1)).sort((a, b) => (a.name < b.name ? -1 : 1)), [
    { name: "vm.cpt", size: 2, mtimeMs: 0 },
    { name: "checkpoints/virtnbdbackup.0.xml", size: 4, mtimeMs: 0 },
  ].sort((a, b) => (a.name < b.name ? -1 : 1)));
  useS3Client(null);
});

test("ranged reads: any range reads right, the block cache stays within its bound", async () => {
  const fake = withFake();
  const data = randomBytes(40 * 1024 * 1024 + 123);
  fake.objects.set("b/big", data);
  setObjectCacheBytes(12 * 1024 * 1024);
  const source = await store.openSource("s3://b/big");
  assert.equal(source.size, data.length);
  const buf = Buffer.alloc(3 * 1024 * 1024);
  for (let i = 0; i < 40; i++) {
    const position = (i * 7_654_321) % data.length;
    const n = await source.read(buf, 0, buf.length, position);
    assert.equal(n, Math.min(buf.length, data.length - position));
    assert.ok(buf.subarray(0, n).equals(data.subarray(position, position + n)), `bytes at ${position}`);
    assert.ok(objectCacheBytes() <= 12 * 1024 * 1024, `cache ${objectCacheBytes()} bytes`);
  }
  for (let at = 0; at < data.length; at += buf.length) await source.read(buf, 0, buf.length, at); // sequential: reads ahead
  assert.ok(objectCacheBytes() <= 12 * 1024 * 1024);
  await source.close();
  assert.equal(objectCacheBytes(), 0, "closing drops its blocks");
  setObjectCacheBytes(32 * 1024 * 1024);
  useS3Client(null);
});
