/**
 * virtnbdbackup's rejected and adjusted option combinations (docs/cli.md, "Rejected option combinations") against a real domain
 * (libvirtd, checkpoints, offline qemu-nbd): the original's messages, exit codes, and nothing
 * left behind (no data files, no running job).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as C from "../../src/libvirt/constants.js";
import { testDomain, MiB } from "../helpers/domains.js";
import { assertOk, captureTruth, ensureBuilt, imageHash, logLines, OUR_BACKUP, ourBackup, ourRestore, sh, type ToolResult } from "../helpers/our-tool.js";
import { tempDir } from "../helpers/tmp.js";

function expectError(r: ToolResult, message: string, level = "ERROR", code = 1): void {
  assert.equal(r.exitCode, code, `exit code for "${message}":\n${r.all}`);
  assert.ok(
    logLines(r, level).some((l) => l.endsWith(` ${message}`) || l.endsWith(`]: ${message}`)),
    `${level} line "${message}" in:\n${r.stderr}`,
  );
}

const dataFiles = async (dir: string) => (await readdir(dir).catch(() => [] as string[])).filter((n) => /\.data(\.partial)?$/.test(n));

test("docs/cli.md: rejected and adjusted combinations, with the original's messages and exit codes", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 16 * MiB }], start: true });
  const work = await tempDir(t, "vnbt-err-");
  let n = 0;
  const dir = async (files: Record<string, string> = {}) => {
    const p = join(work, `d${n++}`);
    await mkdir(p);
    for (const [name, content] of Object.entries(files)) await writeFile(join(p, name), content);
    return p;
  };
  const backup = (args: string[]) => ourBackup(["-d", d.name, "-n", ...args]);
  const noJob = async (what: string) => assert.equal((await d.domain.jobInfo()).type, C.VIR_DOMAIN_JOB_NONE, `no job left after ${what}`);

  // Option checks (before libvirt).
  ensureBuilt();
  let o = await dir();
  expectError(await backup(["-l", "full", "-z", "-t", "raw", "-o", o]), "Compression not supported with raw output.");
  expectError(await backup(["-l", "full", "-t", "raw", "-o", "-"]), "Output type raw not supported to stdout.");
  expectError(await backup(["-l", "full", "--raw", "-o", "-"]), "Saving raw images to stdout is not supported.");
  expectError(await backup(["-l", "inc", "-t", "raw", "-o", o]), "Stream format raw does not support incremental or differential backup.");
  assert.deepEqual(await dataFiles(o), []);
  // -o - with stdout on a terminal (a pty from script(1)): refused instead of writing binary data.
  const tty = await sh("script", ["-qec", `${process.execPath} ${OUR_BACKUP} --nocolor -d ${d.name} -l full -o -; echo "exit=$?"`, "/dev/null"], { cwd: work });
  assert.match(tty, /ERROR .*Refusing to write a zip archive to a terminal/);
  assert.match(tty, /exit=1/);
  const file = join(work, "a-file");
  await writeFile(file, "x");
  expectError(await backup(["-l", "full", "-o", file]), "Can't open output file: [Specified target is a file, not a directory]");

  o = await dir({ "sda.full.data": "x", "sda.inc.virtnbdbackup.1.data.partial": "x" });
  const partial = await backup(["-l", "inc", "-o", o]);
  expectError(partial, `Partial backup found in target directory: [${o}]`);
  assert.equal(logLines(partial, "ERROR").length, 3, partial.stderr);

  // Target directory rules.
  o = await dir();
  expectError(await backup(["-l", "inc", "-o", o]), `Unable to execute [inc] backup: No full backup found in target directory: [${o}]`);
  expectError(await backup(["-l", "diff", "-o", o]), `Unable to execute [diff] backup: No full backup found in target directory: [${o}]`);
  o = await dir({ "sda.copy.data": "x" });
  expectError(await backup(["-l", "full", "-o", o]), "Target directory already contains full or copy backup.");
  expectError(await backup(["-l", "copy", "-o", o]), "Target directory already contains full or copy backup.");
  o = await dir({ "sda.inc.virtnbdbackup.1.data": "x" });
  expectError(await backup(["-l", "auto", "-o", o]), `Can't execute switch to auto incremental backup: specified target folder [${o}] does not contain full backup.`);
  o = await dir({ "sda.full.data": "x" });
  expectError(await backup(["-l", "inc", "-o", o]), `No existing checkpoints found, execute full backup first: the checkpoint list [${join(o, `${d.name}.cpt`)}] is missing or empty.`);
  o = await dir({ "sda.full.data": "x", [`${d.name}.cpt`]: '["virtnbdbackup.0"' });
  for (const level of ["inc", "auto", "full"]) {
    const broken = await backup(["-l", level, "-o", o]);
    assert.equal(broken.exitCode, 1, broken.all);
    assert.doesNotMatch(broken.stderr, /Unexpected error|at parseCpt/);
    if (level !== "full") assert.ok(logLines(broken, "ERROR").some((l) => l.includes(`Checkpoint list [${join(o, `${d.name}.cpt`)}] is not valid JSON: `)), broken.stderr);
  }
  await noJob("refusals");

  // No disk left: the config is still saved.
  o = await dir();
  expectError(await backup(["-l", "full", "-x", "sda", "-o", o]), "Unable to detect disks suitable for backup.");
  assert.ok((await readdir(o)).some((f) => /^vmconfig\..+\.xml$/.test(f)), "vmconfig saved");
  assert.deepEqual(await dataFiles(o), []);

  // A checkpoint that is not ours.
  const foreign = await d.domain.checkpointCreateXML("<domaincheckpoint><name>someone-elses</name></domaincheckpoint>");
  try {
    o = await dir();
    const r = await backup(["-l", "full", "-o", o]);
    expectError(r, "Foreign checkpoint found: [someone-elses]", "CRITICAL");
    assert.equal(logLines(r, "CRITICAL").length, 3, r.stderr);
    assert.deepEqual(await dataFiles(o), []);
    // copy does not care about checkpoints.
    assertOk(await backup(["-l", "copy", "-o", await dir()]), "copy with a foreign checkpoint");
  } finally {
    await foreign.delete(0);
    foreign.free();
  }
  await noJob("foreign checkpoint");

  // Usage errors: exit 2.
  const usage = await backup(["-l", "weekly", "-o", await dir()]);
  assert.equal(usage.exitCode, 2, usage.all);
  assert.match(usage.stderr, /error: argument -l\/--level: invalid choice: 'weekly'/);

  // Offline: full becomes copy, -s is refused.
  await d.destroy();
  o = await dir();
  const off = assertOk(await backup(["-l", "full", "-o", o]), "offline full");
  assert.ok(logLines(off, "WARNING").some((l) => l.endsWith("Domain is offline, resetting backup options.")), off.stderr);
  assert.ok(logLines(off, "WARNING").some((l) => l.endsWith("New Backup level: [copy].")), off.stderr);
  assert.deepEqual(await dataFiles(o), ["sda.copy.data"]);
  expectError(await backup(["-l", "full", "-s", "-o", await dir()]), "Domain is offline: must be active for this function.");

  // Offline inc whose bitmap is gone (checkpoints removed by another tool): refused before any
  // NBD server starts, naming the bitmap and the image; no socket left behind.
  o = await dir({ "sda.full.data": "x", [`${d.name}.cpt`]: '["virtnbdbackup.0"]' });
  const sock = join(work, "sock");
  const gone = await backup(["-l", "inc", "-o", o, "-f", sock]);
  assert.equal(gone.exitCode, 1, gone.all);
  assert.deepEqual(
    logLines(gone, "ERROR").map((l) => l.replace(/^.*?\]: /, "")),
    [`Unable to continue the chain of [${o}]: bitmap [virtnbdbackup.0] of disk [sda] is missing from [${d.disk("sda").path}]: run [-l auto] to start a new chain in this target, or [-l full] into a new directory.`],
  );
  assert.ok(!(await readdir(work)).some((n) => n.startsWith("sock")), "no socket left");
  assert.deepEqual(await dataFiles(o), ["sda.full.data"]);
});

test("offline, one disk's bitmap gone: inc refuses up front and writes nothing; auto makes a copy in generation 2 that restores bit-exact", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 16 * MiB }, { size: 16 * MiB }], start: true });
  const work = await tempDir(t, "vnbt-diskfail-");
  const set = join(work, "set");
  assertOk(await ourBackup(["-d", d.name, "-l", "full", "-o", set, "-n"]), "full");
  await d.destroy();
  await d.writePattern("sda", MiB, MiB, 0x5a);
  await d.writePattern("sdb", MiB, MiB, 0x5b);
  const truth = await captureTruth(d);
  await sh("qemu-img", ["bitmap", "--remove", d.disk("sdb").path, "virtnbdbackup.0"]);
  const before = (await readdir(set)).sort();
  const r = await ourBackup(["-d", d.name, "-l", "inc", "-o", set, "-n", "-f", join(work, "sock")]);
  assert.equal(r.exitCode, 1, r.all);
  const errors = logLines(r, "ERROR");
  assert.equal(errors.length, 1, r.stderr);
  assert.match(errors[0]!, /bitmap \[virtnbdbackup\.0\] of disk \[sdb\] is missing from .*run \[-l auto\]/);
  assert.deepEqual((await readdir(set)).sort().filter((n) => !n.startsWith("backup.inc.")), before, "nothing written but the log");
  const healed = assertOk(await ourBackup(["-d", d.name, "-l", "auto", "-o", set, "-n", "-f", join(work, "sock")]), "auto");
  assert.match(healed.stderr, /WARNING .*disk \[sdb\] is missing .*Starting a new chain in \[.*generation\.2\] with a copy backup/);
  const out = join(work, "out");
  assertOk(await ourRestore(["-i", join(set, "generation.2"), "-o", out, "-n"]), "restore generation 2");
  for (const disk of ["sda", "sdb"]) assert.equal(await imageHash(join(out, `${disk}.qcow2`), "qcow2"), truth[disk], disk);
});
