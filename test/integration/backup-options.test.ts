/**
 * virtnbdbackup options on real domains (libvirtd pull-mode jobs, checkpoints with the SIZE flag,
 * qemu dirty bitmaps): disk selection (-x, -i, --raw, -t raw, --strict), -p / -T / -s / -k,
 * --no-sparse-detection over zeroed data, and zip archives on stdout (a regular file and a pipe).
 * Sets are restored by the original's virtnbdrestore (Debian 1.9.15) and compared bit-exact with
 * the true disk content read through NBD right after each backup.
 */
import { test } from "node:test";
import { existsSync } from "node:fs";
import assert from "node:assert/strict";
import { mkdir, readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import * as C from "../../src/libvirt/constants.js";
import { testDomain, MiB } from "../helpers/domains.js";
import { DomainXml } from "../../src/libvirt/domain-xml.js";
import { assertOk, captureTruth, fileHash, imageHash, logLines, ourBackup, ourRestore, sh, type ToolResult } from "../helpers/our-tool.js";
import { PY_RESTORE, runPython } from "../helpers/python-tool.js";
import { tempDir } from "../helpers/tmp.js";
import { checkExposition } from "../helpers/metrics.js";

const dataFiles = async (dir: string) => (await readdir(dir)).filter((n) => n.endsWith(".data")).sort();

/** Python virtnbdrestore --sequence; returns the content hash of the restored image. */
async function pythonSequenceHash(set: string, out: string, files: string[]): Promise<string> {
  const r = await runPython(PY_RESTORE, ["-i", set, "-o", out, "-n", "--sequence", files.join(",")]);
  assert.equal(r.exitCode, 0, String(r.all));
  assert.doesNotMatch(String(r.all), /ERROR|Traceback/, String(r.all));
  const disk = (await readdir(out)).find((n) => !n.endsWith(".xml"));
  assert.ok(disk, `restored image in ${out}`);
  return imageHash(join(out, disk), "qcow2");
}

test("disk selection: -x, -i, raw disks with and without --raw, -t raw, --strict", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 32 * MiB }, { size: 32 * MiB }, { format: "raw", size: 16 * MiB }], start: true });
  const work = await tempDir(t, "vnbt-sel-");
  const truth = await captureTruth(d); // nothing writes to the disks in this test
  const run = async (dir: string, args: string[]): Promise<ToolResult> => ourBackup(["-d", d.name, "-o", join(work, dir), "-n", ...args]);

  // Default: the raw disk is left out with a warning.
  const plain = assertOk(await run("plain", ["-l", "full"]), "full");
  assert.ok(logLines(plain, "WARNING").some((l) => l.includes("Raw disk [sdc] excluded by default, use option --raw to include.")), plain.stderr);
  assert.match(plain.stderr, /Backup will save \[2\] attached disks\./);
  assert.deepEqual(await dataFiles(join(work, "plain")), ["sda.full.data", "sdb.full.data"]);

  // -x with --strict: the warnings turn into exit code 2, the backup itself is complete.
  const x = await run("x", ["-l", "copy", "-x", "sda", "-e"]);
  assert.equal(x.exitCode, 2, x.all);
  assert.match(x.stderr, /WARNING .*Excluding disk \[sda\] from backup as requested/);
  assert.match(x.stderr, /\[\d+\] Warnings detected during backup operation, forcing exit code 2/);
  assert.deepEqual(await dataFiles(join(work, "x")), ["sdb.copy.data"]);
  assert.equal(await pythonSequenceHash(join(work, "x"), join(work, "x-py"), ["sdb.copy.data"]), truth["sdb"]);
  // Our restore -c of that set: the excluded disk is dropped from the config (and the raw one).
  const xr = assertOk(await ourRestore(["-i", join(work, "x"), "-o", join(work, "x-ours"), "-n", "-c"]), "restore -c of the -x set");
  assert.match(xr.stderr, /WARNING .*No backup file for disk \[sda\] found, assuming it has been excluded\./);
  const xconf = DomainXml.parse(await readFile(join(work, "x-ours", "vmconfig.xml"), "utf8"));
  assert.deepEqual(xconf.disks().map((x) => x.target), ["sdb"]);
  assert.equal(await imageHash(join(work, "x-ours", "sdb.qcow2"), "qcow2"), truth["sdb"]);

  // -i: one disk.
  const i = assertOk(await run("i", ["-l", "copy", "-i", "sda"]), "-i sda");
  assert.match(i.stderr, /INFO .*Skipping disk: \[sdb\] as requested: does not match disk \[sda\]/);
  assert.deepEqual(await dataFiles(join(work, "i")), ["sda.copy.data"]);
  assert.equal(await pythonSequenceHash(join(work, "i"), join(work, "i-py"), ["sda.copy.data"]), truth["sda"]);

  // --raw: the raw disk as a full-provisioned raw image, the qcow2 disks as streams.
  assertOk(await run("raw", ["-l", "full", "--raw"]), "--raw full");
  const rawDir = join(work, "raw");
  assert.deepEqual(await dataFiles(rawDir), ["sda.full.data", "sdb.full.data", "sdc.copy.data"]);
  assert.equal(await fileHash(join(rawDir, "sdc.copy.data")), truth["sdc"], "raw image of sdc");
  assert.ok(!(await readdir(rawDir)).includes("sdc.copy.data.chksum"), "no checksum for raw images");
  const py = await runPython(PY_RESTORE, ["-i", rawDir, "-o", join(work, "raw-py"), "-n", "-r"]);
  assert.equal(py.exitCode, 0, String(py.all));
  assert.equal(await imageHash(join(work, "raw-py", "sda.qcow2"), "qcow2"), truth["sda"]);
  assert.equal(await imageHash(join(work, "raw-py", "sdb.qcow2"), "qcow2"), truth["sdb"]);
  assert.equal(await fileHash(join(work, "raw-py", "sdc.raw")), truth["sdc"], "Python restore -r copies the raw image");
  // … and raw disks are dropped from incrementals.
  const rawInc = assertOk(await run("raw", ["-l", "inc", "--raw"]), "--raw inc");
  assert.match(rawInc.stderr, /WARNING .*Raw disks can't be included during incremental or differential backup\./);
  assert.match(rawInc.stderr, /WARNING .*Excluding raw disks\./);
  assert.deepEqual(await dataFiles(rawDir), ["sda.full.data", "sda.inc.virtnbdbackup.1.data", "sdb.full.data", "sdb.inc.virtnbdbackup.1.data", "sdc.copy.data"]);

  // Only a raw disk selected: level copy.
  const onlyRaw = assertOk(await run("only-raw", ["-l", "full", "--raw", "-i", "sdc"]), "--raw -i sdc");
  assert.match(onlyRaw.stderr, /INFO .*Only raw disks attached, switching to backup mode copy\./);
  assert.deepEqual(await dataFiles(join(work, "only-raw")), ["sdc.copy.data"]);
  assert.equal(await fileHash(join(work, "only-raw", "sdc.copy.data")), truth["sdc"]);

  // -t raw: qcow2 disks as raw images too.
  const traw = assertOk(await run("traw", ["-l", "full", "-t", "raw", "-i", "sdb"]), "-t raw");
  assert.match(traw.stderr, /Creating full provisioned raw backup image/);
  assert.deepEqual(await dataFiles(join(work, "traw")), ["sdb.full.data"]);
  assert.equal(await fileHash(join(work, "traw", "sdb.full.data")), truth["sdb"], "-t raw image of a qcow2 disk");
});

test("-p, -T, -q, --no-sparse-detection, -s and -k on a running domain", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 32 * MiB }], start: true });
  const work = await tempDir(t, "vnbt-opts-");
  const set = join(work, "set");
  const cpt = async () => JSON.parse(await readFile(join(set, `${d.name}.cpt`), "utf8")) as string[];
  const backup = (args: string[]) => ourBackup(["-d", d.name, "-o", set, "-n", ...args]);
  // --metrics-file: node_exporter's textfile format, written at the end of every run.
  const metricsFile = join(work, "virtnbdbackup.prom");
  const before = Math.floor(Date.now() / 1000);
  assertOk(await backup(["-l", "full", "--metrics-file", metricsFile]), "full");
  const ok = checkExposition(await readFile(metricsFile, "utf8"));
  assert.equal(ok.get("virtnbdbackup_last_run_exit_code"), 0);
  assert.ok(ok.get("virtnbdbackup_last_run_bytes")! > MiB, "the data saved");
  assert.ok(ok.get("virtnbdbackup_last_run_timestamp_seconds")! >= before);
  assert.equal(ok.get("virtnbdbackup_last_success_timestamp_seconds"), ok.get("virtnbdbackup_last_run_timestamp_seconds"));
  assert.equal((await stat(metricsFile)).mode & 0o777, 0o644, "readable by node_exporter");
  const failed = await ourBackup(["-d", d.name, "-o", join(work, "no-full"), "-n", "-l", "inc", "--metrics-file", metricsFile]);
  assert.equal(failed.exitCode, 1);
  const bad = checkExposition(await readFile(metricsFile, "utf8"));
  assert.equal(bad.get("virtnbdbackup_last_run_exit_code"), 1);
  assert.equal(bad.get("virtnbdbackup_last_success_timestamp_seconds"), ok.get("virtnbdbackup_last_success_timestamp_seconds"), "the last success is kept");
  const chain = ["sda.full.data"];
  const truths = [await captureTruth(d)];

  await d.writeRandom("sda", 10 * MiB, 2 * MiB, 91);
  const p = assertOk(await backup(["-l", "inc", "-p"]), "-p");
  const size = Number(/Estimated checkpoint backup size: \[(\d+)\] Bytes/.exec(p.stderr)?.[1]);
  assert.ok(size >= 2 * MiB, `estimated size ${size} covers the 2 MiB written\n${p.stderr}`);
  const big = assertOk(await backup(["-l", "inc", "-T", String(1 << 30)]), "-T 1G");
  assert.match(big.stderr, new RegExp(`Backup size \\[${size}\\] does not meet required threshold \\[${1 << 30}\\], skipping backup\\.`));
  assert.deepEqual(await dataFiles(set), ["sda.full.data"], "-p and an unmet -T write no data");
  assert.deepEqual(await cpt(), ["virtnbdbackup.0"], "-p and an unmet -T create no checkpoint");
  // Threshold met; extents queried with nbdinfo (-q) instead of our client.
  const q = assertOk(await backup(["-l", "inc", "-T", "4096", "-q"]), "-T 4096 -q");
  assert.match(q.stderr, /Using qemu tools to query extents/);
  chain.push("sda.inc.virtnbdbackup.1.data");
  truths.push(await captureTruth(d));

  // Zeroed data: without sparse detection the dirty range is saved (as zeros) and restores exactly.
  await d.writeZeroes("sda", 0, MiB);
  await d.writePattern("sda", 20 * MiB, 64 * 1024, 0x5e);
  const ns = assertOk(await backup(["-l", "inc", "--no-sparse-detection", "-v"]), "--no-sparse-detection -v");
  assert.match(ns.stderr, /Skipping detection of sparse\/fstrimmed blocks\./);
  // -v says the decisions: job and checkpoint XML, the plan, the chain check, extents, commands run.
  const debug = logLines(ns, "DEBUG");
  for (const re of [/Backup job XML: <domainbackup/, /Checkpoint XML: <domaincheckpoint/, /Checkpoint plan: level \[inc\] name \[virtnbdbackup\.2\] parent \[virtnbdbackup\.1\]/, /Chain check of .* allow an incremental backup/, /Extent 0: offset 0 length \d+/, /Running: \[qemu-img info /]) {
    assert.ok(debug.some((l) => re.test(l)), `${re} among the -v lines:\n${debug.join("\n")}`);
  }
  assert.ok(debug.length >= 15, `${debug.length} DEBUG lines`);
  chain.push("sda.inc.virtnbdbackup.2.data");
  truths.push(await captureTruth(d));
  for (let i = 0; i < chain.length; i++) {
    assert.equal(await pythonSequenceHash(set, join(work, `py${i}`), chain.slice(0, i + 1)), truths[i]!["sda"], `point ${i}`);
  }

  // -s: job and checkpoint started, nothing copied, the job stays.
  const s = assertOk(await backup(["-l", "inc", "-s"]), "-s");
  assert.match(s.stderr, /Started backup job for debugging, exiting\./);
  assert.notEqual((await d.domain.jobInfo()).type, C.VIR_DOMAIN_JOB_NONE, "-s leaves the backup job running");
  assert.deepEqual(await cpt(), ["virtnbdbackup.0", "virtnbdbackup.1", "virtnbdbackup.2", "virtnbdbackup.3"]);
  const busy = await ourBackup(["-d", d.name, "-o", join(work, "other"), "-n", "-l", "copy"]);
  assert.equal(busy.exitCode, 1, busy.all);
  assert.ok(
    logLines(busy, "ERROR").some((l) => l.includes(`Active block job for running domain: Check with [virsh domjobinfo ${d.name}] or use option -k to kill the active job.`)),
    busy.stderr,
  );
  const k = await backup(["-k"]);
  assert.equal(k.exitCode, 0, k.all);
  assert.equal((await d.domain.jobInfo()).type, C.VIR_DOMAIN_JOB_NONE, "-k ended the job");
  // virtnbdbackup.3 has no data: an inc now would miss the changes made before it.
  // inc: the original's refusal (the run marker is a `*.partial`); auto (the -s run is gone, its
  // lock free) drops the data-less checkpoint and makes it again (docs/behaviour.md, "Unfinished runs").
  const after = await backup(["-l", "inc"]);
  assert.equal(after.exitCode, 1, after.all);
  assert.match(after.stderr, new RegExp(`ERROR .*Partial backup found in target directory: \\[${set}\\]`));
  assert.deepEqual(await dataFiles(set), chain.slice().sort());
  const auto = assertOk(await backup(["-l", "auto"]), "auto after -s");
  assert.match(auto.stderr, /WARNING .*Previous backup run into .* did not finish \(pid \d+, level inc/);
  assert.match(auto.stderr, /Dropped checkpoint \[virtnbdbackup\.3\] of the unfinished run/);
  assert.deepEqual(await cpt(), ["virtnbdbackup.0", "virtnbdbackup.1", "virtnbdbackup.2", "virtnbdbackup.3"]);
  assert.deepEqual(await dataFiles(set), [...chain, "sda.inc.virtnbdbackup.3.data"].sort());
});

test("zip archive on stdout: full -z into a file, inc through a pipe; unzipped and restored by the Python tool", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 32 * MiB }], start: true });
  const work = await tempDir(t, "vnbt-zip-");
  const cwd = join(work, "cwd");
  await mkdir(cwd);
  const full = assertOk(await ourBackup(["-d", d.name, "-l", "full", "-z", "-o", "-", "-n"], { cwd, stdoutFile: join(work, "full.zip") }), "full to a file");
  assert.match(full.stderr, /Compression enabled, level \[2\]/);
  // True paths: the data went into the zip; the qcow.json (also in the zip) stays in the working directory.
  assert.match(full.stderr, /Backup of disk \[sda\] finished, file: \[sda\.full\.data\] in the zip archive on stdout/);
  assert.ok(full.stderr.includes(`Saved qcow image config to: [${join(cwd, "sda.virtnbdbackup.0.qcow.json")}]`), full.stderr);
  assert.ok(existsSync(join(cwd, "sda.virtnbdbackup.0.qcow.json")), "where the log says");
  const truths = [await captureTruth(d)];
  await d.writePattern("sda", 5 * MiB, 3 * MiB, 0x7a);
  await d.writeRandom("sda", 31 * MiB, 64 * 1024, 93);
  assertOk(await ourBackup(["-d", d.name, "-l", "inc", "-o", "-", "-n"], { cwd, stdoutPipe: join(work, "inc.zip") }), "inc to a pipe");
  truths.push(await captureTruth(d));

  const entries = async (zip: string) =>
    (await sh("unzip", ["-Z1", zip])).split("\n").filter(Boolean);
  const fullEntries = await entries(join(work, "full.zip"));
  assert.equal(fullEntries[0], "sda.full.data");
  for (const e of ["vmconfig.virtnbdbackup.0.xml", `${d.name}.cpt`, "checkpoints/", "checkpoints/virtnbdbackup.0.xml", "sda.virtnbdbackup.0.qcow.json"]) {
    assert.ok(fullEntries.includes(e), `${e} in full.zip: ${fullEntries.join(" ")}`);
  }
  assert.ok(fullEntries.some((e) => /^backup\.full\.\d{14}\.log$/.test(e)));
  const incEntries = await entries(join(work, "inc.zip"));
  assert.equal(incEntries[0], "sda.inc.virtnbdbackup.1.data");
  for (const e of [...fullEntries, ...incEntries]) assert.doesNotMatch(e, /\.partial$|\.chksum$/);
  await sh("unzip", ["-tq", join(work, "full.zip")]);
  await sh("unzip", ["-tq", join(work, "inc.zip")]);

  const set = join(work, "unzipped");
  await sh("unzip", ["-oq", join(work, "full.zip"), "-d", set]);
  await sh("unzip", ["-oq", join(work, "inc.zip"), "-d", set]);
  assert.equal(await pythonSequenceHash(set, join(work, "py0"), ["sda.full.data"]), truths[0]!["sda"]);
  assert.equal(await pythonSequenceHash(set, join(work, "py1"), ["sda.full.data", "sda.inc.virtnbdbackup.1.data"]), truths[1]!["sda"]);
  // The side files stay in the working directory for the next run.
  const left = await readdir(cwd);
  assert.ok(left.includes(`${d.name}.cpt`) && left.includes("checkpoints"), left.join(" "));
  assert.ok(!left.some((n) => n.endsWith(".data")), "no data files outside the archive");
});

test("-S: a shut-off domain is started paused for an online full and stopped again; an offline inc follows", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 16 * MiB }] });
  const work = await tempDir(t, "vnbt-startdom-");
  const set = join(work, "set");
  const full = assertOk(await ourBackup(["-d", d.name, "-l", "full", "-S", "-o", set, "-n"]), "-S full");
  assert.match(full.stderr, /INFO .*Starting domain in paused state/);
  assert.doesNotMatch(full.stderr, /Domain is offline/);
  // AUTODESTROY: libvirt destroys it when our connection closes, which it handles after we exit.
  for (let i = 0; i < 50 && (await d.isRunning()); i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(await d.isRunning(), false, "the temporarily started domain is gone again");
  assert.deepEqual(JSON.parse(await readFile(join(set, `${d.name}.cpt`), "utf8")), ["virtnbdbackup.0"], "an online full: checkpoint created");
  const truth0 = await captureTruth(d);
  await d.writeRandom("sda", 5 * MiB, MiB, 95);
  assertOk(await ourBackup(["-d", d.name, "-l", "inc", "-o", set, "-n"]), "offline inc after -S");
  const truth1 = await captureTruth(d);
  const inc = (await dataFiles(set)).find((n) => n.startsWith("sda.inc."));
  assert.ok(inc, "offline inc file");
  assert.equal(await pythonSequenceHash(set, join(work, "py0"), ["sda.full.data"]), truth0["sda"]);
  assert.equal(await pythonSequenceHash(set, join(work, "py1"), ["sda.full.data", inc]), truth1["sda"]);
});
