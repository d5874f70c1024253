/**
 * Kills at the levels and modes the kill trials (crash-kill.test.ts: online full/inc/diff into a
 * directory) do not reach, each mid-transfer (128 MiB of random data, lz4-HC: seconds of
 * transfer): an online copy, an offline inc (qemu-nbd reads the shut-off image), an offline full
 * (becomes copy), and an inc to stdout (`-o -`) after a complete full to stdout.
 *
 * After each: no data file under its final name, the `.partial` (directory) and the run marker
 * stay, the next inc refuses, no qemu-nbd of the run is left, a job left by SIGKILL is cleared
 * with `-k`, what the set held before restores bit-exact (the killed run is not part of it), and
 * the documented recovery (a new full/copy) restores bit-exact.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { mkdir, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import * as C from "../../src/libvirt/constants.js";
import { testDomain, MiB, type TestDomain } from "../helpers/domains.js";
import { assertOk, captureTruth, ensureBuilt, imageHash, OUR_BACKUP, ourBackup, ourRestore, startOurBackup } from "../helpers/our-tool.js";
import { REFUSALS } from "../helpers/crash-trials.js";
import { tempDir } from "../helpers/tmp.js";

const execFileP = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(cond: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** qemu-nbd processes serving this image (a killed offline run must not leave one). */
async function qemuNbdFor(image: string): Promise<string[]> {
  const r = await execFileP("pgrep", ["-af", "qemu-nbd"]).catch(() => ({ stdout: "" }));
  return r.stdout.split("\n").filter((l) => l.includes(image));
}

async function jobLeft(d: TestDomain): Promise<boolean> {
  return (await d.domain.jobInfo()).type !== C.VIR_DOMAIN_JOB_NONE;
}

/**
 * Our backup with stdout going straight into a file (`> file`: the file descriptor itself, not a
 * pipe through this process, whose output buffer limit would close it on big archives).
 */
function backupToFile(args: string[], cwd: string, file: string): { child: ChildProcess; result: Promise<{ exitCode: number | null; stderr: string }> } {
  ensureBuilt();
  const fd = openSync(file, "w");
  const child = spawn(process.execPath, [OUR_BACKUP, "--nocolor", ...args], { cwd, stdio: ["ignore", fd, "pipe"] });
  closeSync(fd);
  let stderr = "";
  child.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
  return { child, result: new Promise((r) => child.on("close", (code) => r({ exitCode: code, stderr }))) };
}

/** Starts a backup, kills it once `ready` holds (mid-transfer), waits for its end. */
async function killMidTransfer(args: string[], signal: NodeJS.Signals, ready: () => Promise<boolean>, o: { cwd: string; stdoutFile: string } | null = null) {
  const p = o ? backupToFile(args, o.cwd, o.stdoutFile) : startOurBackup(args);
  let ended = false;
  void p.result.finally(() => (ended = true));
  await waitFor(async () => ended || (await ready()), "the transfer to start");
  await sleep(200);
  assert.equal(ended, false, `still transferring when ${signal} is sent`);
  p.child.kill(signal);
  return p.result;
}

const exists = async (p: string) => !!(await stat(p).catch(() => null));
const sizeOf = async (p: string) => (await stat(p).catch(() => null))?.size ?? 0;

async function restoredHash(dir: string, out: string, extra: string[] = []): Promise<string> {
  assertOk(await ourRestore(["-i", dir, "-o", out, "-n", ...extra]), `restore of ${dir}`);
  return imageHash(join(out, "sda.qcow2"), "qcow2");
}

test("kills mid-transfer at the other levels: online copy, offline inc, offline full→copy, inc to stdout", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 128 * MiB, content: [{ seed: 81, offset: 0, length: 128 * MiB }] }], start: true });
  const work = await tempDir(t, "vnbt-clev-");
  const slow = ["-z", "12", "-n"];

  // Online copy, SIGKILL: the job stays; the next run says so, -k clears it.
  const copyDir = join(work, "copy");
  await killMidTransfer(["-d", d.name, "-l", "copy", "-o", copyDir, ...slow], "SIGKILL", () => exists(join(copyDir, "sda.copy.data.partial")));
  assert.ok(await jobLeft(d), "SIGKILL leaves the libvirt job");
  const again = await ourBackup(["-d", d.name, "-l", "full", "-o", join(work, "copy-next"), "-n"]);
  assert.equal(again.exitCode, 1);
  assert.match(again.stderr, new RegExp(`stop it with \\[virtnbdbackup -d ${d.name} -o \\S+ -k\\] or \\[virsh -c \\S+ domjobabort ${d.name}\\]`));
  assertOk(await ourBackup(["-d", d.name, "-o", copyDir, "-k", "-n"]), "-k");
  await waitFor(async () => !(await jobLeft(d)), "-k to end the job", 10_000);
  let names = await readdir(copyDir);
  assert.ok(names.includes("sda.copy.data.partial") && names.includes(`${d.name}.run.partial`), names.join(" "));
  assert.ok(!names.includes("sda.copy.data"));
  assert.equal((await ourRestore(["-i", copyDir, "-o", join(work, "r-copy"), "-n"])).exitCode, 1, "nothing to restore from a killed copy");

  // A complete online full → inc, then the domain is shut off.
  const set = join(work, "set");
  assertOk(await ourBackup(["-d", d.name, "-l", "full", "-o", set, "-n"]), "full");
  await d.writeRandom("sda", 8 * MiB, 16 * MiB, 82);
  assertOk(await ourBackup(["-d", d.name, "-l", "inc", "-o", set, "-n"]), "inc");
  const truth1 = (await captureTruth(d))["sda"]!;
  await d.destroy();
  await d.writeRandom("sda", 0, 96 * MiB, 83);
  const image = d.disk("sda").path;

  // Offline inc, SIGKILL and SIGTERM mid-transfer (qemu-nbd reads the image).
  for (const signal of ["SIGKILL", "SIGTERM"] as const) {
    const dir = join(work, `offline-${signal}`);
    await execFileP("cp", ["-a", set, dir]);
    const partial = async () => (await readdir(dir)).some((n) => n.endsWith(".data.partial"));
    const r = await killMidTransfer(["-d", d.name, "-l", "inc", "-o", dir, ...slow], signal, partial);
    if (signal === "SIGTERM") {
      assert.equal(r.exitCode, 1, r.stderr);
      assert.match(r.stderr, /Signal caught: 15/);
      // qemu-nbd was killed: its socket is removed with it.
      const socket = /starting local NBD server, socket: \[([^\]]+)\]/.exec(r.stderr)?.[1];
      assert.ok(socket, r.stderr);
      assert.equal(await exists(socket), false, `socket ${socket} left behind`);
    }
    await waitFor(async () => (await qemuNbdFor(image)).length === 0, `no qemu-nbd left for the image after ${signal}`, 10_000);
    names = await readdir(dir);
    assert.ok(names.some((n) => /^sda\.inc\.virtnbdbackup\.1\.\d+\.data\.partial$/.test(n)), `${signal}: .partial kept: ${names.join(" ")}`);
    assert.ok(names.includes(`${d.name}.run.partial`), `${signal}: marker kept`);
    assert.ok(!names.some((n) => /^sda\.inc\.virtnbdbackup\.1\.\d+\.data$/.test(n)), `${signal}: no final data file`);
    const inc = await ourBackup(["-d", d.name, "-l", "inc", "-o", dir, "-n"]);
    assert.equal(inc.exitCode, 1, inc.all);
    assert.match(inc.stderr, REFUSALS);
    // The set restores to its last complete backup; the killed offline inc is not part of it.
    assert.equal(await restoredHash(dir, join(work, `r-off-${signal}`)), truth1, `${signal}: the set restores its last complete state`);
  }

  // Offline full (→ copy), SIGKILL: nothing to restore, marker kept.
  const offCopy = join(work, "offline-copy");
  await killMidTransfer(["-d", d.name, "-l", "full", "-o", offCopy, ...slow], "SIGKILL", () => exists(join(offCopy, "sda.copy.data.partial")));
  await waitFor(async () => (await qemuNbdFor(image)).length === 0, "no qemu-nbd left after the killed offline copy", 10_000);
  names = await readdir(offCopy);
  assert.ok(names.includes(`${d.name}.run.partial`) && !names.includes("sda.copy.data"), names.join(" "));
  assert.equal((await ourRestore(["-i", offCopy, "-o", join(work, "r-offcopy"), "-n"])).exitCode, 1);

  // Recovery while shut off: a copy into a fresh directory, bit-exact.
  const truthOff = await d.diskHash("sda");
  const fresh = join(work, "offline-fresh");
  assertOk(await ourBackup(["-d", d.name, "-l", "full", "-o", fresh, "-n"]), "offline copy");
  assert.equal(await restoredHash(fresh, join(work, "r-fresh")), truthOff, "the recovery copy restores bit-exact");

  // Stdout: a complete full as a zip, then an inc to stdout killed mid-transfer (SIGKILL).
  await d.start();
  const cwd = join(work, "cwd");
  await mkdir(cwd);
  const fullZip = join(work, "full.zip");
  const full = await backupToFile(["-d", d.name, "-l", "full", "-o", "-", "-n"], cwd, fullZip).result;
  assert.equal(full.exitCode, 0, full.stderr);
  const truthZip = (await captureTruth(d))["sda"]!;
  await d.writeRandom("sda", 0, 128 * MiB, 84);
  const incZip = join(work, "inc.zip");
  await killMidTransfer(["-d", d.name, "-l", "inc", "-o", "-", ...slow], "SIGKILL", async () => (await sizeOf(incZip)) > MiB, { cwd, stdoutFile: incZip });
  if (await jobLeft(d)) assertOk(await ourBackup(["-d", d.name, "-o", cwd, "-k", "-n"]), "-k");
  assert.ok((await readdir(cwd)).includes(`${d.name}.run.partial`), "stdout inc: the marker stays in the working directory");
  const next = await backupToFile(["-d", d.name, "-l", "inc", "-o", "-", "-n"], cwd, join(work, "inc2.zip")).result;
  assert.equal(next.exitCode, 1, next.stderr);
  assert.match(next.stderr, /Unfinished backup run found/);
  assert.equal((await ourRestore(["-i", incZip, "-o", join(work, "r-inczip"), "-n"])).exitCode, 1, "the cut archive is refused");
  assert.equal(await restoredHash(fullZip, join(work, "r-fullzip")), truthZip, "the full archive still restores bit-exact");
});
