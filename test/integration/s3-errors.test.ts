/**
 * Object-storage targets that cannot work (a real Ceph RGW): no such bucket, no set under the
 * prefix, a server that is not there, refused credentials, raw images. Each run: exit 1 and one
 * ERROR line naming the place, nothing but a refused run's log written.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { logLines, ourBackup, ourRestore, type ToolResult } from "../helpers/our-tool.js";
import { createTestBucket, ensureRgw, listKeys, removeTestBucket, type RgwEndpoint } from "../helpers/rgw.js";

function envOf(rgw: RgwEndpoint, over: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...process.env, AWS_ACCESS_KEY_ID: rgw.accessKeyId, AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey, AWS_REGION: rgw.region, AWS_ENDPOINT_URL: rgw.endpoint, ...over };
}

function oneError(r: ToolResult, pattern: RegExp): void {
  assert.equal(r.exitCode, 1, r.all);
  const errors = logLines(r, "ERROR");
  assert.equal(errors.length, 1, r.all);
  assert.match(errors[0]!, pattern);
  assert.doesNotMatch(r.all, /\n\s+at |Traceback|Unexpected error/);
}

test("s3:// that cannot work: one ERROR line naming it, exit 1, nothing but a log written", async (t) => {
  const rgw = await ensureRgw();
  const bucket = await createTestBucket(rgw, "vnbt-s3err");
  t.after(() => removeTestBucket(rgw, bucket));
  // The bucket is checked before libvirt is asked about the domain.
  oneError(await ourBackup(["-d", "vnbt-no-such-domain", "-l", "full", "-o", "s3://vnbt-no-such-bucket/vm"], { env: envOf(rgw) }), /Can't open output: bucket of \[s3:\/\/vnbt-no-such-bucket\/vm\] does not exist/);
  oneError(await ourRestore(["-i", `s3://${bucket}/nothing`, "-o", "verify"], { env: envOf(rgw) }), new RegExp(`Backup source \\[s3://${bucket}/nothing\\] does not exist`));
  const started = Date.now();
  const dead = await ourBackup(["-d", "vnbt-no-such-domain", "-l", "full", "-o", `s3://${bucket}/vm`, "--s3-endpoint", "http://127.0.0.1:9"], { env: envOf(rgw) });
  oneError(dead, /Can't open output: Unable to look up bucket \[s3:\/\/[^\]]+\]: .*ECONNREFUSED/);
  assert.ok(Date.now() - started < 30_000, "a dead server is given up within seconds");
  oneError(await ourBackup(["-d", "vnbt-no-such-domain", "-l", "full", "-o", `s3://${bucket}/vm`], { env: envOf(rgw, { AWS_SECRET_ACCESS_KEY: "wrong" }) }), /Can't open output: .*\(HTTP 403\)/);
  oneError(await ourBackup(["-d", "vnbt-no-such-domain", "-l", "full", "-t", "raw", "-o", `s3://${bucket}/vm`], { env: envOf(rgw) }), /Raw images \(-t raw\) need a directory target: \[s3:\/\/[^\]]+\/vm\] holds stream files only\./);
  // The refused raw run leaves its log, as it does in a directory; nothing else is there.
  assert.deepEqual((await listKeys(rgw, bucket, "")).filter((k) => !/^vm\/backup\.full\.\d+\.log$/.test(k)), [], "nothing but a log was written");
});
