import { test } from "node:test";
import assert from "node:assert/strict";
import { createWriteStream } from "node:fs";
import { readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { DirectoryTarget } from "../../src/storage/directory-target.js";
import { TargetExistsError } from "../../src/storage/durable.js";
import { ZipTarget } from "../../src/storage/zip-target.js";
import { ZipSource } from "../../src/storage/zip-source.js";
import { DirectorySource } from "../../src/storage/directory-source.js";
import { readExactly } from "../../src/format/source.js";
import { createHash } from "node:crypto";
import { native } from "../../src/native/index.js";
import { pattern } from "../helpers/streams.js";
import { tempDir } from "../helpers/tmp.js";

test("directory target: bytes go to .partial and appear only on commit, never replacing", async (t) => {
  const dir = await tempDir(t);
  const target = await DirectoryTarget.create(join(dir, "set"));
  const f = await target.createFile("sda.full.data");
  assert.equal(f.location, join(dir, "set", "sda.full.data.partial"));
  const buf = Buffer.alloc(4096, 1);
  await f.write(buf);
  buf.fill(2); // the caller reuses its buffer after write resolves
  await f.write(buf);
  assert.deepEqual(await readdir(join(dir, "set")), ["sda.full.data.partial"]);
  await f.commit();
  assert.deepEqual(await readdir(join(dir, "set")), ["sda.full.data"]);
  const data = await readFile(join(dir, "set", "sda.full.data"));
  assert.equal(data.length, 8192);
  assert.equal(data[0], 1);
  assert.equal(data[8191], 2);

  const again = await target.createFile("sda.full.data");
  await again.write(Buffer.from("other"));
  await assert.rejects(again.commit(), TargetExistsError);
  assert.equal((await readFile(join(dir, "set", "sda.full.data"))).length, 8192, "existing backup untouched");

  const aborted = await target.createFile("sdb.full.data");
  await aborted.write(Buffer.from("x"));
  await aborted.abort();
  assert.ok((await readdir(join(dir, "set"))).includes("sdb.full.data.partial"), "evidence of the failed run stays");

  await target.putFile("x.cpt", '["virtnbdbackup.0"]');
  await target.putFile("x.cpt", '["virtnbdbackup.0", "virtnbdbackup.1"]', { replace: true });
  assert.equal(await readFile(join(dir, "set", "x.cpt"), "utf8"), '["virtnbdbackup.0", "virtnbdbackup.1"]');
});

test("directory target: raw images are .partial files of the disk's size, written at positions, moved on commit", async (t) => {
  const dir = await tempDir(t);
  const target = await DirectoryTarget.create(dir);
  const image = await target.createImage("sda.copy.data", 3 << 20);
  assert.equal(image.location, join(dir, "sda.copy.data.partial"));
  await image.writeAt(Buffer.alloc(4096, 1), 8192);
  await image.writeAt(Buffer.alloc(100, 2), (3 << 20) - 100);
  assert.deepEqual(await readdir(dir), ["sda.copy.data.partial"]);
  await image.commit();
  const data = await readFile(join(dir, "sda.copy.data"));
  const want = Buffer.alloc(3 << 20);
  want.fill(1, 8192, 12288);
  want.fill(2, (3 << 20) - 100);
  assert.deepEqual(data, want);

  const again = await target.createImage("sda.copy.data", 4096);
  await assert.rejects(again.commit(), TargetExistsError);
  const failed = await target.createImage("sdb.copy.data", 4096);
  await failed.abort();
  assert.deepEqual((await readdir(dir)).sort(), ["sda.copy.data", "sda.copy.data.partial", "sdb.copy.data.partial"]);
});

test("directory target: a file larger than several writeback windows, written with writes in flight, is intact", async (t) => {
  const dir = await tempDir(t);
  const target = await DirectoryTarget.create(dir);
  const f = await target.createFile("big.data");
  const want = createHash("sha256");
  const inFlight: Promise<void>[] = [];
  for (let i = 0; i < 48; i++) {
    const chunk = Buffer.alloc(4 << 20, i + 1); // 192 MiB in all: six 32 MiB windows
    want.update(chunk);
    inFlight.push(f.write(chunk));
    if (inFlight.length === 4) await inFlight.shift();
  }
  await Promise.all(inFlight);
  await f.commit();
  const got = createHash("sha256").update(await readFile(join(dir, "big.data"))).digest("hex");
  assert.equal(got, want.digest("hex"));
});

test("syncFileRange: starts and waits for writeback; a bad descriptor rejects with errno text", async () => {
  await assert.rejects(native.syncFileRange(987654, 0, 4096, true), /sync_file_range: Bad file descriptor/);
});

test("zip target: stored zip64 entries readable by Python's zipfile and in place by ZipSource", async (t) => {
  const dir = await tempDir(t);
  const zipPath = join(dir, "backup.zip");
  const out = createWriteStream(zipPath);
  const zip = new ZipTarget(out, dir);
  const big = pattern(3 * 1024 * 1024 + 17, 5);
  const entry = await zip.createFile("sda.full.data");
  const chunk = Buffer.alloc(1024 * 1024);
  for (let at = 0; at < big.length; at += chunk.length) {
    const n = big.copy(chunk, 0, at, Math.min(big.length, at + chunk.length));
    await entry.write(chunk.subarray(0, n));
  }
  await entry.commit();
  await zip.putFile("vmconfig.virtnbdbackup.0.xml", "<domain/>");
  await zip.addDirectory("checkpoints/");
  await zip.putFile("checkpoints/virtnbdbackup.0.xml", "<domaincheckpoint/>");
  await zip.close();
  await new Promise((r) => out.end(r));

  const py = execFileSync("/usr/bin/python3", [
    "-c",
    "import zipfile,sys,json; z=zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print(json.dumps([[i.filename,i.compress_type,i.file_size] for i in z.infolist()]))",
    zipPath,
  ]).toString();
  assert.deepEqual(JSON.parse(py), [
    ["sda.full.data", 0, big.length],
    ["vmconfig.virtnbdbackup.0.xml", 0, 9],
    ["checkpoints/", 0, 0],
    ["checkpoints/virtnbdbackup.0.xml", 0, 19],
  ]);

  const src = await ZipSource.open([zipPath]);
  t.after(() => src.close());
  const names = (await src.list()).map((f) => f.name).sort();
  assert.deepEqual(names, ["checkpoints/virtnbdbackup.0.xml", "sda.full.data", "vmconfig.virtnbdbackup.0.xml"]);
  const data = await src.open("sda.full.data");
  assert.equal(data.size, big.length);
  const tail = Buffer.alloc(1000);
  await readExactly(data, tail, 0, 1000, big.length - 1000);
  assert.deepEqual(tail, big.subarray(big.length - 1000));
  assert.equal((await src.readFile("vmconfig.virtnbdbackup.0.xml")).toString(), "<domain/>");
});

test("zip source refuses deflated data entries with a clear message; directory source lists subfolders", async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, "sda.full.data"), "x".repeat(1000));
  execFileSync("/usr/bin/python3", ["-c", "import zipfile,sys; z=zipfile.ZipFile(sys.argv[1],'w',zipfile.ZIP_DEFLATED); z.write(sys.argv[2],'sda.full.data'); z.close()", join(dir, "d.zip"), join(dir, "sda.full.data")]);
  const src = await ZipSource.open([join(dir, "d.zip")]);
  t.after(() => src.close());
  await assert.rejects(src.open("sda.full.data"), /d\.zip:sda\.full\.data: entry is compressed/);
  assert.equal((await src.readFile("sda.full.data")).length, 1000);

  await writeFile(join(dir, "x.cpt"), "[]");
  const { mkdir } = await import("node:fs/promises");
  await mkdir(join(dir, "checkpoints"));
  await writeFile(join(dir, "checkpoints", "virtnbdbackup.0.xml"), "<x/>");
  const set = new DirectorySource(dir);
  const names = (await set.list()).map((f) => f.name).sort();
  assert.deepEqual(names, ["checkpoints/virtnbdbackup.0.xml", "d.zip", "sda.full.data", "x.cpt"]);
  // The listing is read once per source (each data file's checks ask for it): a snapshot.
  await writeFile(join(dir, "later.log"), "");
  assert.equal(await set.list(), await set.list());
  assert.ok(!(await set.list()).some((f) => f.name === "later.log"));
  assert.ok((await new DirectorySource(dir).list()).some((f) => f.name === "later.log"), "a new source lists it");
});
