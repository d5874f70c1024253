/**
 * Signals beyond SIGINT/SIGTERM (backup-interrupt.test.ts covers those mid-transfer):
 *
 *   - virtnbdbackup, directory mode, mid-transfer: SIGHUP and SIGPIPE (kill -HUP / -PIPE) →
 *     "Signal caught: N", exit 1 within seconds, no libvirt job, `.partial` and run marker kept,
 *     the next inc refuses;
 *   - virtnbdbackup `-o -`: the reader of stdout goes away mid-transfer (EPIPE; Node ignores
 *     SIGPIPE, the write fails) → exit 1 within seconds, one ERROR naming it, no job, the run
 *     marker stays in the working directory, so the next `-o -` inc there refuses; a SIGKILL of a
 *     `-o -` run leaves a truncated archive that restore refuses (exit 1, no image);
 *   - virtnbdrestore, both engines, SIGTERM/SIGINT/SIGHUP mid-restore: ends within seconds with
 *     a non-zero status, no qemu-img/qemu-nbd left, no image under its final name (at most the
 *     clearly marked `<image>.partial`), and the next restore into the same directory removes the
 *     leftover and is bit-exact;
 *   - virtnbdmap: SIGHUP stops its server and removes its temp directory (exit 0, as SIGINT/SIGTERM).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createHash } from "node:crypto";
import * as C from "../../src/libvirt/constants.js";
import { testDomain, MiB, type TestDomain } from "../helpers/domains.js";
import { assertOk, captureTruth, ensureBuilt, imageHash, logLines, OUR_BACKUP, OUR_RESTORE, ourBackup, ourRestore, startOurBackup } from "../helpers/our-tool.js";
import { exportHash, portOpen, startMap } from "../helpers/map-run.js";
import { fullExtents, modelDisk } from "../helpers/map-model.js";
import { buildStream, pattern } from "../helpers/streams.js";
import { tempDir } from "../helpers/tmp.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(cond: () => Promise<boolean> | boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function noJob(d: TestDomain, label: string): Promise<void> {
  assert.equal((await d.domain.jobInfo()).type, C.VIR_DOMAIN_JOB_NONE, `${label}: no backup job left`);
}

test("virtnbdbackup: SIGHUP and SIGPIPE mid-transfer, the stdout reader going away (EPIPE), SIGKILL of a -o - run", async (t) => {
  // 128 MiB of random data with lz4-HC: the transfer lasts seconds.
  const d = await testDomain(t, { disks: [{ size: 128 * MiB, content: [{ seed: 71, offset: 0, length: 128 * MiB }] }], start: true });
  const work = await tempDir(t, "vnbt-sig-");

  for (const [signal, num] of [["SIGHUP", 1], ["SIGPIPE", 13]] as const) {
    const set = join(work, signal);
    const p = startOurBackup(["-d", d.name, "-l", "full", "-z", "12", "-o", set, "-n"]);
    let ended = false;
    void p.result.finally(() => (ended = true));
    await waitFor(async () => ended || !!(await stat(join(set, "sda.full.data.partial")).catch(() => null)), "the .partial file");
    await sleep(300);
    assert.equal(ended, false, `${signal}: still transferring`);
    const sent = Date.now();
    p.child.kill(signal);
    const r = await p.result;
    assert.equal(r.exitCode, 1, `${signal}: exit code\n${r.all}`);
    assert.ok(Date.now() - sent < 10_000, `${signal}: exit within seconds`);
    assert.match(r.stderr, new RegExp(`ERROR .*Signal caught: ${num}\\b`));
    await noJob(d, signal);
    const names = await readdir(set);
    assert.ok(names.includes("sda.full.data.partial") && names.includes(`${d.name}.run.partial`), `${signal}: .partial and marker kept: ${names.join(" ")}`);
    assert.ok(!names.includes("sda.full.data"), `${signal}: no data file under its final name`);
    const inc = await ourBackup(["-d", d.name, "-l", "inc", "-o", set, "-n"]);
    assert.equal(inc.exitCode, 1, inc.all);
    assert.match(inc.stderr, /Partial backup found in target directory/);
  }

  // -o -: the reader reads 4 MiB of the archive, then goes away.
  ensureBuilt();
  const cwd = join(work, "stdout");
  await (await import("node:fs/promises")).mkdir(cwd);
  const child = spawn(process.execPath, [OUR_BACKUP, "--nocolor", "-d", d.name, "-l", "full", "-z", "12", "-o", "-", "-n"], { cwd, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
  let got = 0;
  let closedAt = 0;
  child.stdout.on("data", (b: Buffer) => {
    got += b.length;
    if (got > 4 * MiB && !closedAt) {
      closedAt = Date.now();
      child.stdout.destroy();
    }
  });
  const [code, sig] = await new Promise<[number | null, string | null]>((r) => child.on("close", (c, s) => r([c, s])));
  assert.ok(closedAt > 0, `the reader closed mid-archive:\n${stderr}`);
  assert.equal(code, 1, `EPIPE: exit 1 (signal ${sig})\n${stderr}`);
  assert.ok(Date.now() - closedAt < 10_000, "EPIPE: exit within seconds");
  assert.match(stderr, /ERROR .*Output stream closed: \[EPIPE\]: the reader of stdout went away/);
  assert.doesNotMatch(stderr, /Unhandled|\n\s+at /, "no crash");
  await noJob(d, "EPIPE");
  assert.ok((await readdir(cwd)).includes(`${d.name}.run.partial`), "EPIPE: the run marker stays in the working directory");
  const inc = await ourBackup(["-d", d.name, "-l", "inc", "-o", "-", "-n"], { cwd, stdoutFile: join(work, "inc.zip") });
  assert.equal(inc.exitCode, 1, inc.all);
  assert.match(inc.stderr, /Unfinished backup run found in target directory/);

  // SIGKILL of a -o - run: the archive is cut short; restore refuses it; -k clears the job.
  const cwd2 = join(work, "stdout2");
  await (await import("node:fs/promises")).mkdir(cwd2);
  const zip = join(work, "killed.zip");
  const p = startOurBackup(["-d", d.name, "-l", "full", "-z", "12", "-o", "-", "-n"], { cwd: cwd2, stdoutFile: zip });
  await waitFor(async () => ((await stat(zip).catch(() => null))?.size ?? 0) > 2 * MiB, "archive data");
  p.child.kill("SIGKILL");
  await p.result;
  const k = await ourBackup(["-d", d.name, "-o", cwd2, "-k", "-n"]);
  assert.equal(k.exitCode, 0, k.all);
  await waitFor(async () => (await d.domain.jobInfo()).type === C.VIR_DOMAIN_JOB_NONE, "the job to end after -k", 10_000);
  const out = join(work, "from-zip");
  const r = await ourRestore(["-i", zip, "-o", out, "-n"]);
  assert.equal(r.exitCode, 1, `a truncated archive is refused\n${r.all}`);
  assert.ok(logLines(r, "ERROR").length >= 1);
  assert.deepEqual((await readdir(out).catch(() => [] as string[])).filter((n) => /qcow2/.test(n)), [], "no image from a truncated archive");
});

test("virtnbdrestore: SIGTERM, SIGINT and SIGHUP mid-restore (both engines): non-zero within seconds, no helper left, no final image; the next restore is bit-exact", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 256 * MiB, content: [{ seed: 75, offset: 0, length: 256 * MiB }] }], start: true });
  const work = await tempDir(t, "vnbt-rsig-");
  const set = join(work, "set");
  assertOk(await ourBackup(["-d", d.name, "-l", "full", "-z", "-o", set, "-n"]), "full");
  const truth = (await captureTruth(d))["sda"]!;
  const helpers = () => execFileSync("sh", ["-c", `pgrep -af 'qemu-img|qemu-nbd' || true`]).toString().split("\n").filter((l) => l.includes(work));
  let n = 0;
  for (const engine of ["convert", "nbd-writes"] as const) {
    for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
      const out = join(work, `out${n++}`);
      const env = { ...process.env, VIRTNBD_RESTORE_ENGINE: engine };
      ensureBuilt();
      const child = spawn(process.execPath, [OUR_RESTORE, "--nocolor", "-i", set, "-o", out, "-n"], { env, stdio: ["ignore", "ignore", "pipe"] });
      let stderr = "";
      child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
      const closed = new Promise<[number | null, string | null]>((r) => child.on("close", (c, s) => r([c, s])));
      await waitFor(() => /Applying data from backup file/.test(stderr) || child.exitCode !== null, "the restore to apply data");
      await sleep(150);
      assert.equal(child.exitCode, null, `${engine}/${signal}: still restoring when signalled`);
      const sent = Date.now();
      child.kill(signal);
      const [code, sig] = await closed;
      assert.ok(code !== 0, `${engine}/${signal}: non-zero end (code ${code}, signal ${sig})`);
      assert.ok(Date.now() - sent < 10_000, `${engine}/${signal}: ends within seconds`);
      await waitFor(() => helpers().length === 0, `${engine}/${signal}: no qemu-img/qemu-nbd left`, 10_000);
      const left = await readdir(out);
      assert.ok(!left.includes("sda.qcow2"), `${engine}/${signal}: no image under its final name: ${left.join(" ")}`);
      assert.deepEqual(left.filter((f) => f !== "sda.qcow2.partial"), [], `${engine}/${signal}: at most the marked partial image`);
      // The next restore into the same directory: the leftover goes, the image is bit-exact.
      assertOk(await ourRestore(["-i", set, "-o", out, "-n"], { env }), `${engine}/${signal}: restore again`);
      assert.equal(await imageHash(join(out, "sda.qcow2"), "qcow2"), truth, `${engine}/${signal}: bit-exact after the interrupted restore`);
    }
  }
});

test("virtnbdmap: SIGHUP stops the server and removes the temp directory, exit 0", async (t) => {
  const dir = await tempDir(t);
  const size = 8 * MiB;
  const ext = fullExtents(size, [{ start: MiB, data: pattern(MiB, 9) }]);
  const full = join(dir, "sda.full.data");
  await writeFile(full, await buildStream(ext, { virtualSize: size }));
  const m = await startMap(t, [full], { logFile: join(dir, "map.log") });
  assert.equal(await exportHash(m.uri), createHash("sha256").update(modelDisk([{ size, full: true, extents: ext }])).digest("hex"));
  const tmp = m.tmpDir();
  const { code, output } = await m.stop("SIGHUP");
  assert.equal(code, 0, output);
  assert.match(output, /Received signal: \[1\]/);
  assert.equal(await portOpen(m.port), false, "nothing listens any more");
  assert.equal(existsSync(tmp), false, "temp directory is gone");
});
