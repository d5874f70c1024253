/**
 * Interrupting virtnbdbackup mid-transfer (SIGINT and SIGTERM) on a real domain with a 256 MiB
 * disk of random data (libvirtd pull-mode job, lz4-HC to make the transfer last seconds): the
 * process exits 1 within seconds, libvirt has no job left, the `.partial` file stays, the next
 * inc refuses with the original's message, the set restores up to its last complete backup
 * (`--until`; a plain restore names the unfinished checkpoint), and a new full into a fresh
 * directory works and is restored bit-exact by the Python virtnbdrestore.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { StreamReader } from "../../src/format/reader.js";
import * as C from "../../src/libvirt/constants.js";
import { DirectorySource } from "../../src/storage/directory-source.js";
import { testDomain, MiB } from "../helpers/domains.js";
import { assertOk, captureTruth, imageHash, ourBackup, ourRestore, startOurBackup } from "../helpers/our-tool.js";
import { PY_RESTORE, runPython } from "../helpers/python-tool.js";
import { tempDir } from "../helpers/tmp.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitForFile(path: string, done: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await stat(path).catch(() => null)) return;
    if (done()) throw new Error(`backup ended before ${path} appeared`);
    if (Date.now() > deadline) throw new Error(`${path} did not appear`);
    await sleep(10);
  }
}

test("SIGINT and SIGTERM mid-transfer: exit 1, no job left, .partial kept, inc refused, the set restores up to its last complete backup, a new full restores bit-exact", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 256 * MiB, content: [{ seed: 17, offset: 0, length: 256 * MiB }] }], start: true });
  const work = await tempDir(t, "vnbt-intr-");

  /** Starts the backup, signals it once its .partial exists, checks the aftermath. */
  const interrupt = async (signal: "SIGINT" | "SIGTERM", dir: string, level: string, partial: string) => {
    const p = startOurBackup(["-d", d.name, "-l", level, "-z", "12", "-o", dir, "-n"]);
    let ended = false;
    void p.result.finally(() => (ended = true));
    await waitForFile(join(dir, partial), () => ended);
    await sleep(300);
    assert.equal(ended, false, "still transferring when the signal is sent");
    const sent = Date.now();
    p.child.kill(signal);
    const r = await p.result;
    const took = Date.now() - sent;
    assert.equal(r.exitCode, 1, `${signal}: exit code\n${r.all}`);
    assert.ok(took < 10_000, `${signal}: exited after ${took} ms`);
    assert.match(r.stderr, new RegExp(`Signal caught: ${signal === "SIGINT" ? 2 : 15}`));
    assert.equal((await d.domain.jobInfo()).type, C.VIR_DOMAIN_JOB_NONE, `${signal}: no backup job left`);
    const names = await readdir(dir);
    assert.ok(names.includes(partial), `${signal}: .partial kept: ${names.join(" ")}`);
    assert.ok(!names.includes(partial.replace(/\.partial$/, "")), `${signal}: no complete-looking data file`);

    const inc = await ourBackup(["-d", d.name, "-l", "inc", "-o", dir, "-n"]);
    assert.equal(inc.exitCode, 1, inc.all);
    assert.match(inc.stderr, new RegExp(`ERROR .*Partial backup found in target directory: \\[${dir}\\]`));
  };

  // SIGINT during an inc after a complete full: the full stays restorable.
  const set = join(work, "set");
  assertOk(await ourBackup(["-d", d.name, "-l", "full", "-o", set, "-n"]), "full");
  const truth0 = await captureTruth(d);
  await d.writeRandom("sda", 0, 192 * MiB, 18);
  await interrupt("SIGINT", set, "inc", "sda.inc.virtnbdbackup.1.data.partial");
  const whole = await ourRestore(["-i", set, "-o", join(work, "whole"), "-n"]);
  assert.equal(whole.exitCode, 1, "the interrupted checkpoint is named, not silently skipped");
  assert.match(whole.stderr, /Checkpoint \[virtnbdbackup\.1\] is listed in the checkpoint file but no data file of disk \[sda\] holds it/);
  assertOk(await ourRestore(["-i", set, "-o", join(work, "until0"), "-n", "--until", "virtnbdbackup.0"]), "restore --until 0");
  assert.equal(await imageHash(join(work, "until0", "sda.qcow2"), "qcow2"), truth0["sda"], "full restored after the interrupted inc");

  // SIGTERM during a full.
  await interrupt("SIGTERM", join(work, "term"), "full", "sda.full.data.partial");

  // The domain is fine: a new full into a fresh directory, restored by the original's tool. lz4:
  // the 256 MiB extent is read and compressed in 32 MiB pieces (chunked trailer entries).
  await d.writePattern("sda", 100 * MiB, MiB, 0x3c);
  const fresh = join(work, "fresh");
  assertOk(await ourBackup(["-d", d.name, "-l", "full", "-z", "-o", fresh, "-n"]), "full after interrupts");
  const truth = await captureTruth(d);
  const file = await new DirectorySource(fresh).open("sda.full.data");
  try {
    const trailer = (await StreamReader.open(file)).trailer ?? [];
    assert.ok(trailer.some((e) => typeof e !== "number"), `a chunked trailer entry: ${JSON.stringify(trailer).slice(0, 200)}`);
  } finally {
    await file.close();
  }
  const out = join(work, "restored");
  const py = await runPython(PY_RESTORE, ["-i", fresh, "-o", out, "-n"]);
  assert.equal(py.exitCode, 0, String(py.all));
  assert.equal(await imageHash(join(out, "sda.qcow2"), "qcow2"), truth["sda"]);
});
