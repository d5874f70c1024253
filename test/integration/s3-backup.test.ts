/**
 * Backups into object storage: a real single-node Ceph cluster with RGW (scripts/ceph-rgw.sh,
 * test/helpers/rgw.ts), a running TCG domain with two disks, libvirtd.
 *
 *   - full -z, inc, inc into `s3://BUCKET/PREFIX`: the objects are named as the files of a
 *     directory set; every point restores bit-exact from the bucket (latest, `--until`, `-d`),
 *     verify and dump read it; a copy of the prefix into a folder is a set the Python tool
 *     restores bit-exact;
 *   - a backup killed (SIGKILL) mid-upload leaves no object under a data file's name, only an
 *     upload under way; the next inc refuses like a `.partial` file; `auto` aborts it and goes
 *     on; SIGTERM aborts the uploads itself;
 *   - a bucket quota too small: one ERROR naming the object, exit 1, no data object; the set
 *     still restores its earlier point.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { testDomain, MiB, type TestDomain } from "../helpers/domains.js";
import { assertOk, captureTruth, imageHash, logLines, ourBackup, ourRestore, startOurBackup, type ToolResult } from "../helpers/our-tool.js";
import { PY_RESTORE, runPython } from "../helpers/python-tool.js";
import { createTestBucket, ensureRgw, listKeys, listMultipartUploads, removeTestBucket, s3Client, setBucketQuota, type RgwEndpoint } from "../helpers/rgw.js";
import { tempDir } from "../helpers/tmp.js";

function s3Env(rgw: RgwEndpoint): NodeJS.ProcessEnv {
  return { ...process.env, AWS_ACCESS_KEY_ID: rgw.accessKeyId, AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey, AWS_REGION: rgw.region, AWS_ENDPOINT_URL: rgw.endpoint };
}

async function bucketFor(t: { after(fn: () => Promise<void>): void }, rgw: RgwEndpoint): Promise<string> {
  const bucket = await createTestBucket(rgw, "vnbt-s3");
  t.after(() => removeTestBucket(rgw, bucket));
  return bucket;
}

async function backup(d: TestDomain, rgw: RgwEndpoint, target: string, level: string, extra: string[] = []): Promise<ToolResult> {
  return ourBackup(["-d", d.name, "-l", level, "-o", target, "-n", ...extra], { env: s3Env(rgw) });
}

/** Restores `input` (a folder or s3://) into a fresh folder; the hash of each disk. */
async function restoredHashes(rgw: RgwEndpoint, input: string, out: string, extra: string[] = []): Promise<Record<string, string>> {
  assertOk(await ourRestore(["-i", input, "-o", out, "-n", ...extra], { env: s3Env(rgw) }), `restore ${input} ${extra.join(" ")}`);
  const hashes: Record<string, string> = {};
  for (const name of (await readdir(out)).filter((n) => !n.endsWith(".xml") && !n.endsWith(".json"))) hashes[name.replace(/\.(qcow2|raw)$/, "")] = await imageHash(join(out, name), "qcow2");
  return hashes;
}

/** Every object under `prefix/` copied into `dir` as files (what `rclone copy` does). */
async function copyPrefix(rgw: RgwEndpoint, bucket: string, prefix: string, dir: string): Promise<void> {
  const client = s3Client(rgw);
  for (const key of await listKeys(rgw, bucket, `${prefix}/`)) {
    const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    const path = join(dir, key.slice(prefix.length + 1));
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, await got.Body!.transformToByteArray());
  }
  client.destroy();
}

const twoDisks = { start: true, disks: [{ size: 96 * MiB }, { size: 64 * MiB }] };

test("full -z, inc, inc into s3://: directory names, every point restored bit-exact from the bucket, verify, dump; the Python tool restores a copy of the prefix", async (t) => {
  const rgw = await ensureRgw();
  const bucket = await bucketFor(t, rgw);
  const d = await testDomain(t, twoDisks);
  const work = await tempDir(t, "vnbt-s3-");
  const target = `s3://${bucket}/vms/${d.name}`;
  const points: { checkpoint: string; truth: Record<string, string> }[] = [];

  assertOk(await backup(d, rgw, target, "full", ["-z"]), "full -z");
  points.push({ checkpoint: "virtnbdbackup.0", truth: await captureTruth(d) });
  await d.writeRandom("sda", 10 * MiB, 3 * MiB, 7);
  await d.writePattern("sdb", 40 * MiB, 1 * MiB, 0x5a);
  assertOk(await backup(d, rgw, target, "inc"), "inc 1");
  points.push({ checkpoint: "virtnbdbackup.1", truth: await captureTruth(d) });
  await d.writePattern("sda", 90 * MiB, 2 * MiB, 0x77);
  assertOk(await backup(d, rgw, target, "inc", ["-z"]), "inc 2");
  points.push({ checkpoint: "virtnbdbackup.2", truth: await captureTruth(d) });

  // The objects are a directory set's files; no upload is left.
  const keys = (await listKeys(rgw, bucket, `vms/${d.name}/`)).map((k) => k.slice(`vms/${d.name}/`.length));
  for (const name of ["sda.full.data", "sdb.full.data", "sda.inc.virtnbdbackup.1.data", "sdb.inc.virtnbdbackup.2.data", `${d.name}.cpt`, "checkpoints/virtnbdbackup.2.xml", "vmconfig.virtnbdbackup.0.xml"]) {
    assert.ok(keys.includes(name), `object ${name} in ${keys.join(", ")}`);
  }
  assert.ok(keys.some((k) => /^backup\.full\.\d+\.log$/.test(k)), `a run log among ${keys.join(", ")}`);
  assert.ok(!keys.some((k) => k.endsWith(".partial")), `no .partial object: ${keys.join(", ")}`);
  assert.deepEqual(await listMultipartUploads(rgw, bucket, "vms/"), []);

  // Every point from the bucket.
  for (const [i, p] of points.entries()) {
    const until = i === points.length - 1 ? [] : ["--until", p.checkpoint];
    assert.deepEqual(await restoredHashes(rgw, target, join(work, `r${i}`), until), p.truth, `point ${p.checkpoint}`);
  }
  const one = await restoredHashes(rgw, target, join(work, "sdb-only"), ["-d", "sdb"]);
  assert.deepEqual(one, { sdb: points[2]!.truth["sdb"] });
  const verify = assertOk(await ourRestore(["-i", target, "-o", "verify"], { env: s3Env(rgw) }), "verify");
  assert.equal(logLines(verify, "ERROR").length, 0, verify.all);
  assert.match(verify.all, /sda\.inc\.virtnbdbackup\.2\.data/);
  const dump = assertOk(await ourRestore(["-i", target, "-o", "dump"], { env: s3Env(rgw) }), "dump");
  assert.match(dump.all, /virtnbdbackup\.2/);

  // The prefix copied into a folder: a set for both tools.
  const copy = join(work, "copy");
  await copyPrefix(rgw, bucket, `vms/${d.name}`, copy);
  for (const disk of ["sda", "sdb"]) {
    const out = join(work, `py-${disk}`);
    const py = await runPython(PY_RESTORE, ["-i", copy, "-o", out, "-n", "-d", disk]);
    assert.equal(py.exitCode, 0, String(py.all));
    const image = (await readdir(out)).find((n) => !n.endsWith(".xml"));
    assert.ok(image, `Python restored ${disk} into ${out}`);
    assert.equal(await imageHash(join(out, image), "qcow2"), points[2]!.truth[disk], `Python restore of ${disk}`);
  }
});

test("SIGKILL mid-upload: no data object, the upload is a .partial; inc refuses, auto aborts it and goes on; SIGTERM aborts its own uploads", async (t) => {
  const rgw = await ensureRgw();
  const bucket = await bucketFor(t, rgw);
  // Random data so the upload takes long enough to be caught in the middle.
  const d = await testDomain(t, { start: true, disks: [{ size: 640 * MiB, content: [{ seed: 5, offset: 0, length: 600 * MiB }] }] });
  const work = await tempDir(t, "vnbt-s3-kill-");
  const target = `s3://${bucket}/kill`;
  assertOk(await backup(d, rgw, target, "full"), "full");
  const before = await captureTruth(d);
  await d.writeRandom("sda", 0, 500 * MiB, 9);

  const killUnderWay = async (signal: "SIGKILL" | "SIGTERM") => {
    const run = startOurBackup(["-d", d.name, "-l", "inc", "-o", target, "-n"], { env: s3Env(rgw) });
    for (let i = 0; ; i++) {
      const uploads = await listMultipartUploads(rgw, bucket, "kill/");
      if (uploads.some((u) => u.key.endsWith(".data"))) break;
      assert.ok(i < 600, "an upload under way within 60 s");
      await new Promise((r) => setTimeout(r, 100));
    }
    process.kill(run.pid, signal);
    return run.result;
  };

  const killed = await killUnderWay("SIGKILL");
  assert.equal(killed.signal, "SIGKILL");
  const keys = await listKeys(rgw, bucket, "kill/");
  assert.ok(!keys.includes("kill/sda.inc.virtnbdbackup.1.data"), `no data object of the killed run: ${keys.join(", ")}`);
  assert.ok((await listMultipartUploads(rgw, bucket, "kill/")).some((u) => u.key === "kill/sda.inc.virtnbdbackup.1.data"));

  const refused = await backup(d, rgw, target, "inc");
  assert.equal(refused.exitCode, 1, refused.all);
  assert.match(logLines(refused, "ERROR").join("\n"), /Partial backup found|Unfinished backup run/, refused.all);
  assert.deepEqual(await restoredHashes(rgw, target, join(work, "r-before"), ["--until", "virtnbdbackup.0"]), before, "the set restores its last complete point");

  const healed = assertOk(await backup(d, rgw, target, "auto"), "auto after the kill");
  assert.match(healed.all, /did not finish/);
  assert.deepEqual(await listMultipartUploads(rgw, bucket, "kill/"), [], "auto aborted the dead run's uploads");
  const after = await captureTruth(d);
  assert.deepEqual(await restoredHashes(rgw, target, join(work, "r-after")), after);

  await d.writeRandom("sda", 100 * MiB, 500 * MiB, 11);
  const termed = await killUnderWay("SIGTERM");
  assert.equal(termed.exitCode, 1, termed.all);
  assert.deepEqual(await listMultipartUploads(rgw, bucket, "kill/"), [], "SIGTERM aborted the uploads");
  assert.deepEqual(await restoredHashes(rgw, target, join(work, "r-term"), ["--until", "virtnbdbackup.1"]), after, "still the last complete point");
});

test("bucket quota too small: one ERROR naming the object, exit 1, no data object; the earlier point restores; auto goes on once there is room", async (t) => {
  const rgw = await ensureRgw();
  const bucket = await bucketFor(t, rgw);
  const d = await testDomain(t, { start: true, disks: [{ size: 128 * MiB, content: [{ seed: 3, offset: 0, length: 24 * MiB }] }] });
  const work = await tempDir(t, "vnbt-s3-quota-");
  const target = `s3://${bucket}/q`;
  assertOk(await backup(d, rgw, target, "full"), "full");
  const before = await captureTruth(d);
  await d.writeRandom("sda", 32 * MiB, 64 * MiB, 4);
  await setBucketQuota(bucket, 40 * MiB);
  const full = await backup(d, rgw, target, "inc");
  assert.equal(full.exitCode, 1, full.all);
  const errors = logLines(full, "ERROR");
  assert.ok(errors.some((l) => /s3:\/\/.*sda\.inc\.virtnbdbackup\.1\.data.*QuotaExceeded/.test(l)), errors.join("\n"));
  assert.doesNotMatch(full.all, /Traceback|at .*\.js:\d+/);
  const keys = await listKeys(rgw, bucket, "q/");
  assert.ok(!keys.includes("q/sda.inc.virtnbdbackup.1.data"), keys.join(", "));
  assert.deepEqual(await listMultipartUploads(rgw, bucket, "q/"), [], "the failed upload was aborted");
  assert.deepEqual(await restoredHashes(rgw, target, join(work, "r-before"), ["--until", "virtnbdbackup.0"]), before);

  await setBucketQuota(bucket, null);
  assertOk(await backup(d, rgw, target, "auto"), "auto once there is room");
  assert.deepEqual(await restoredHashes(rgw, target, join(work, "r-after")), await captureTruth(d));
});
