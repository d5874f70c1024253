/**
 * virtnbdrestore's refusals and failures on the Python tool's fixture sets (no libvirt domain):
 * each is one clear ERROR line with the documented exit code, and a failed restore leaves no
 * output directory it created (one it found stays, with whatever was in it). Dump and verify
 * say what they found and checked.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { cp, mkdir, readdir, readFile, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { logLines, ourRestore, ROOT, type ToolResult } from "../helpers/our-tool.js";
import { tempDir } from "../helpers/tmp.js";

const PLAIN = join(ROOT, "fixtures/upstream-2.47/plain");
const ZIP = join(ROOT, "fixtures/upstream-2.47/zip");
const INC1 = "sda.inc.virtnbdbackup.1.data";

/** exit 1, exactly one ERROR line matching `message`. */
function expectOneError(r: ToolResult, message: RegExp, label: string): void {
  assert.equal(r.exitCode, 1, `${label}: exit code\n${r.all}`);
  const errors = logLines(r, "ERROR");
  assert.equal(errors.length, 1, `${label}: one ERROR line\n${r.stderr}`);
  assert.match(errors[0]!, message, label);
}

const exists = (p: string) => stat(p).then(() => true, () => false);

test("-d naming a disk the set does not have: one ERROR line naming it and the set's disks, exit 1, no output directory", async (t) => {
  const work = await tempDir(t, "vnbt-rlines-");
  const out = join(work, "out");
  const r = await ourRestore(["-i", PLAIN, "-o", out, "-n", "-d", "vdz"]);
  expectOneError(r, /Unable to parse disks from config: .*\[vdz\].*\[sda\]/, "-d vdz");
  assert.equal(await exists(out), false, "no output directory left");
});

test("-o naming an existing regular file: one ERROR line, exit 1, the file untouched", async (t) => {
  const work = await tempDir(t, "vnbt-rlines-");
  const file = join(work, "a-file");
  await writeFile(file, "keep me\n");
  const r = await ourRestore(["-i", PLAIN, "-o", file, "-n"]);
  expectOneError(r, new RegExp(`Specified target \\[${file}\\] is a file, not a directory$`), "-o file");
  assert.doesNotMatch(r.stderr, /EEXIST/);
  assert.equal(await readFile(file, "utf8"), "keep me\n");
});

test("a failed restore removes the output directory it created, never one it found", async (t) => {
  const work = await tempDir(t, "vnbt-rlines-");
  const failing = ["-i", PLAIN, "-n", "--until", "virtnbdbackup.7"];
  const created = join(work, "created");
  expectOneError(await ourRestore([...failing, "-o", created]), /virtnbdbackup\.7/, "new directory");
  assert.equal(await exists(created), false, "the directory this run created is gone");

  const found = join(work, "found");
  await mkdir(found);
  expectOneError(await ourRestore([...failing, "-o", found]), /virtnbdbackup\.7/, "existing empty directory");
  assert.deepEqual(await readdir(found), [], "an existing directory stays");

  const used = join(work, "used");
  await mkdir(used);
  await writeFile(join(used, "other.txt"), "x");
  expectOneError(await ourRestore([...failing, "-o", used]), /virtnbdbackup\.7/, "existing directory with a file");
  assert.deepEqual(await readdir(used), ["other.txt"], "its file stays");
});

test("verify of a truncated data file names the file in the checksum line, exit 1", async (t) => {
  const set = join(await tempDir(t, "vnbt-rlines-"), "set");
  await cp(PLAIN, set, { recursive: true, preserveTimestamps: true });
  await truncate(join(set, INC1), (await stat(join(set, INC1))).size - 1000);
  const r = await ourRestore(["-i", set, "-o", "verify"]);
  expectOneError(r, new RegExp(`Stored sums do not match for \\[${join(set, INC1)}\\]: \\[\\d+\\]!=\\[\\d+\\]`), "truncated inc");
});

test("verify of zip sets says what was checked in each entry and that it passed, naming each entry's archive", async () => {
  const r = await ourRestore(["-i", ZIP, "-o", "verify"]);
  assert.equal(r.exitCode, 0, r.all);
  assert.deepEqual(logLines(r, "ERROR"), []);
  for (const [archive, entry] of [["0-full.zip", "sda.full.data"], ["1-inc.zip", INC1]] as const) {
    // Each label names the one archive the entry is in (not the list of all of them).
    assert.ok(r.stderr.includes(`Computing checksum for: ${join(ZIP, archive)}:${entry}\n`), `${entry} is in ${archive}\n${r.stderr}`);
    assert.match(r.stderr, new RegExp(`No checksum found, skipping: \\[.*${entry}\\]`), entry);
    assert.match(r.stderr, new RegExp(`INFO .*Stream check passed: \\[.*${entry}\\]: \\d+ frames; checked: frame headers and bounds`), entry);
  }
});

test("dump of a set with a raw image: INFO for the raw file, exit 0; an unreadable file: ERROR, exit 1", async (t) => {
  const set = join(await tempDir(t, "vnbt-rlines-"), "set");
  await cp(PLAIN, set, { recursive: true, preserveTimestamps: true });
  // A raw `--raw` disk copy: a plain image, whole sectors, no stream metadata.
  await writeFile(join(set, "sdb.copy.data"), Buffer.alloc(1 << 20, 0x5a));
  const r = await ourRestore(["-i", set, "-o", "dump"]);
  assert.equal(r.exitCode, 0, r.all);
  assert.deepEqual(logLines(r, "ERROR"), []);
  assert.match(r.stderr, /INFO .*Raw image, no stream metadata: \[sdb\.copy\.data\]/);
  assert.equal((JSON.parse(r.stdout) as unknown[]).length, 2, "the two streams' metadata");

  await writeFile(join(set, "sdc.full.data"), "not a stream");
  const bad = await ourRestore(["-i", set, "-o", "dump"]);
  expectOneError(bad, /Reading metadata from \[sdc\.full\.data\] failed/, "unreadable file");
  assert.equal((JSON.parse(bad.stdout) as unknown[]).length, 2, "the readable streams are still dumped");
});

test("a folder of zip sets with the same data file in two archives: one ERROR line naming both, exit 1", async (t) => {
  const dir = await tempDir(t, "vnbt-rlines-");
  await cp(join(ZIP, "0-full.zip"), join(dir, "a.zip"));
  await cp(join(ZIP, "0-full.zip"), join(dir, "b.zip"));
  for (const action of [["-o", "verify"], ["-o", "dump"], ["-o", join(dir, "out"), "-n"]]) {
    const r = await ourRestore(["-i", dir, ...action]);
    expectOneError(r, /\[sda\.full\.data\] is in both \[a\.zip\] and \[b\.zip\]$/, action.join(" "));
  }
  assert.equal(await exists(join(dir, "out")), false);
});

test("colours only on a terminal: stderr to a pipe or file has no escape sequences, FORCE_COLOR forces them", async () => {
  const bin = join(ROOT, "bin/virtnbdrestore.js");
  const set = join(ROOT, "fixtures/upstream-2.47/plain");
  const env = { ...process.env };
  delete env["NO_COLOR"];
  delete env["FORCE_COLOR"];
  const piped = await execa(process.execPath, [bin, "-i", set, "-o", "dump"], { env, extendEnv: false, reject: false });
  assert.equal(piped.exitCode, 0);
  assert.match(String(piped.stderr), /INFO root virtnbdrestore - main \[main\]:  Version: /);
  assert.doesNotMatch(String(piped.stderr), /\x1b\[/, "no escapes when stderr is not a terminal");
  const forced = await execa(process.execPath, [bin, "-i", set, "-o", "dump"], { env: { ...env, FORCE_COLOR: "1" }, extendEnv: false, reject: false });
  assert.match(String(forced.stderr), /\x1b\[3\dm/, "FORCE_COLOR: escapes anyway");
});
