/**
 * Reading and pruning sets in object storage (a real Ceph RGW, scripts/ceph-rgw.sh):
 *   - `virtnbdmap -f s3://…full,s3://…inc` serves the chain bit-exact (plain and lz4), reading
 *     through ranged GETs;
 *   - `virtnbdrestore -i s3://… --live` boots a copy from the bucket and completes it;
 *   - directory sets written by the Python tools (1.9.15 and 2.47, plain and lz4: fixtures/)
 *     copied into a prefix restore bit-exact from there, every checkpoint;
 *   - `virtnbdprune` on an `s3://` target with generations: dry run changes nothing, keep-last
 *     removes the old generations (their objects gone, the kept one untouched and restorable).
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { chmod, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { testDomain, MiB, TEST_DOMAIN_PREFIX } from "../helpers/domains.js";
import { exportHash, startMap } from "../helpers/map-run.js";
import { assertOk, captureTruth, imageHash, ourBackup, ourPrune, ourRestore, sh, startOurRestore } from "../helpers/our-tool.js";
import { chainFiles } from "../helpers/prune-sets.js";
import { createTestBucket, ensureRgw, listKeys, removeTestBucket, s3Client, type RgwEndpoint } from "../helpers/rgw.js";
import { tempDir } from "../helpers/tmp.js";

function useRgw(rgw: RgwEndpoint): NodeJS.ProcessEnv {
  // virtnbdmap's helper passes the test's environment on.
  Object.assign(process.env, { AWS_ACCESS_KEY_ID: rgw.accessKeyId, AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey, AWS_REGION: rgw.region, AWS_ENDPOINT_URL: rgw.endpoint });
  return process.env;
}

async function bucketFor(t: TestContext, rgw: RgwEndpoint): Promise<string> {
  const bucket = await createTestBucket(rgw, "vnbt-s3r");
  t.after(() => removeTestBucket(rgw, bucket));
  return bucket;
}

test("virtnbdmap serves s3:// chains bit-exact (plain and lz4); live restore boots from the bucket and completes", async (t) => {
  const rgw = await ensureRgw();
  const env = useRgw(rgw);
  const bucket = await bucketFor(t, rgw);
  const d = await testDomain(t, { start: true, disks: [{ size: 64 * MiB }] });
  const plain = `s3://${bucket}/plain`;
  const lz4 = `s3://${bucket}/lz4`;
  for (const [target, extra] of [[plain, []], [lz4, ["-z", "--chain", "lz4"]]] as const) assertOk(await ourBackup(["-d", d.name, "-l", "full", "-o", target, "-n", ...extra], { env }), `full ${target}`);
  await d.writeRandom("sda", 20 * MiB, 4 * MiB, 12);
  await d.writePattern("sda", 50 * MiB, MiB, 0x3c);
  for (const [target, extra] of [[plain, []], [lz4, ["-z", "--chain", "lz4"]]] as const) assertOk(await ourBackup(["-d", d.name, "-l", "inc", "-o", target, "-n", ...extra], { env }), `inc ${target}`);
  const truth = (await captureTruth(d))["sda"];

  for (const [target, inc] of [[plain, "virtnbdbackup.1"], [lz4, "virtnbdbackup.lz4.1"]]) {
    const map = await startMap(t, [`${target}/sda.full.data`, `${target}/sda.inc.${inc}.data`]);
    assert.equal(await exportHash(map.uri), truth, `map of ${target}`);
    const stopped = await map.stop("SIGTERM");
    assert.equal(stopped.code, 0, stopped.output);
  }

  await d.destroy();
  const work = await tempDir(t, "vnbt-s3-live-");
  await chmod(work, 0o755); // qemu opens the images in it
  const name = `${TEST_DOMAIN_PREFIX}s3live-${process.pid}`;
  t.after(async () => {
    await sh("virsh", ["-q", "destroy", name]).catch(() => undefined);
    await sh("virsh", ["-q", "undefine", name]).catch(() => undefined);
  });
  const out = join(work, "live");
  const live = startOurRestore(["-i", lz4, "-o", out, "--live", "-N", name, "-n"], { env });
  const r = assertOk(await live.result, "live restore from s3");
  assert.match(r.stderr, /Live restore complete/);
  await sh("virsh", ["-q", "destroy", name]);
  const file = d.disks[0]!.path.split("/").pop()!;
  assert.equal(await imageHash(join(out, file), "qcow2"), truth, "the live copy holds the backup's data");
});

test("sets written by the Python tools, copied into a prefix, restore bit-exact from there at every checkpoint", async (t) => {
  const rgw = await ensureRgw();
  const env = useRgw(rgw);
  const bucket = await bucketFor(t, rgw);
  const client = s3Client(rgw);
  t.after(() => client.destroy());
  const root = new URL("../../fixtures/", import.meta.url).pathname;
  const expected = JSON.parse(await readFile(join(root, "expected.json"), "utf8")) as { sets: { path: string; zip: boolean; checkpoints: { checkpoint: string; sha256: string }[] }[] };
  const work = await tempDir(t, "vnbt-s3-py-");
  for (const set of expected.sets.filter((s) => !s.zip)) {
    const prefix = set.path.replace(/[^a-z0-9.-]/gi, "-");
    for (const name of await readdir(join(root, set.path), { recursive: true })) {
      const file = join(root, set.path, name);
      if (name === "checkpoints") continue;
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}/${name}`, Body: await readFile(file) }));
    }
    for (const [i, point] of set.checkpoints.entries()) {
      const out = join(work, `${prefix}-${i}`);
      const until = i === set.checkpoints.length - 1 ? [] : ["--until", point.checkpoint];
      assertOk(await ourRestore(["-i", `s3://${bucket}/${prefix}`, "-o", out, "-n", ...until], { env }), `restore ${set.path} ${point.checkpoint}`);
      const image = (await readdir(out)).find((n) => !n.endsWith(".xml") && !n.endsWith(".json"));
      assert.ok(image, `an image restored from ${set.path}`);
      assert.equal(await imageHash(join(out, image), "qcow2"), point.sha256, `${set.path} at ${point.checkpoint}`);
    }
  }
});

test("credentials and region from AWS profile files (AWS_PROFILE), the endpoint from --s3-endpoint", async (t) => {
  const rgw = await ensureRgw();
  const bucket = await bucketFor(t, rgw);
  const client = s3Client(rgw);
  t.after(() => client.destroy());
  const root = new URL("../../fixtures/upstream-2.47/plain/", import.meta.url).pathname;
  for (const name of await readdir(root, { recursive: true })) {
    if (name !== "checkpoints") await client.send(new PutObjectCommand({ Bucket: bucket, Key: `set/${name}`, Body: await readFile(join(root, name)) }));
  }
  const home = await tempDir(t, "vnbt-s3-home-");
  await mkdir(join(home, ".aws"));
  await writeFile(join(home, ".aws", "credentials"), `[vnbt]\naws_access_key_id = ${rgw.accessKeyId}\naws_secret_access_key = ${rgw.secretAccessKey}\n`);
  await writeFile(join(home, ".aws", "config"), "[profile vnbt]\nregion = eu-central-1\n");
  const env: NodeJS.ProcessEnv = { PATH: process.env["PATH"], HOME: home, AWS_PROFILE: "vnbt" };
  const dump = assertOk(await ourRestore(["-i", `s3://${bucket}/set`, "-o", "dump", "--s3-endpoint", rgw.endpoint], { env }), "dump with profile credentials");
  assert.match(dump.all, /virtnbdbackup\.1/);
  const wrong = await ourRestore(["-i", `s3://${bucket}/set`, "-o", "dump", "--s3-endpoint", rgw.endpoint], { env: { ...env, AWS_PROFILE: "none" } });
  assert.equal(wrong.exitCode, 1, wrong.all);
});

test("virtnbdprune on s3://: dry run changes nothing; keep-last 1 removes the older generations' objects, the newest stays whole", async (t) => {
  const rgw = await ensureRgw();
  const env = useRgw(rgw);
  const bucket = await bucketFor(t, rgw);
  const client = s3Client(rgw);
  t.after(() => client.destroy());
  const domain = `vnbt-s3prune-${process.pid}`;
  const put = async (prefix: string, files: Map<string, Buffer>) => {
    for (const [name, body] of files) await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}${name}`, Body: body }));
  };
  // Generation 1 at the top level, generations 2 and 3 in their folders; checkpoint indexes go on.
  await put("vm/", await chainFiles({ domain, start: "2026-11-01 01:00", incs: 2 }));
  await put("vm/generation.2/", await chainFiles({ domain, start: "2026-11-08 01:00", incs: 2, first: 3 }));
  const newest = await chainFiles({ domain, start: "2026-11-15 01:00", incs: 1, first: 6 });
  await put("vm/generation.3/", newest);
  const all = await listKeys(rgw, bucket, "vm/");

  const dry = assertOk(await ourPrune(["--keep-last", "1", "--dry-run", `s3://${bucket}/vm`], { env }), "dry run");
  assert.match(dry.all, /generation\.2/);
  assert.deepEqual(await listKeys(rgw, bucket, "vm/"), all, "a dry run removes nothing");

  assertOk(await ourPrune(["--keep-last", "1", `s3://${bucket}/vm`], { env }), "prune");
  const left = await listKeys(rgw, bucket, "vm/");
  assert.deepEqual(left.sort(), [...newest.keys()].map((n) => `vm/generation.3/${n}`).sort(), `only generation 3 is left: ${left.join(", ")}`);
  const verify = assertOk(await ourRestore(["-i", `s3://${bucket}/vm`, "-o", "dump"], { env }), "dump of what is left");
  assert.match(verify.all, /virtnbdbackup\.7/);
});
