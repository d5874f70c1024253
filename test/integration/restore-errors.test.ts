/**
 * virtnbdrestore failures on a real set made by our virtnbdbackup (libvirtd, qemu-img, qemu-nbd,
 * a small tmpfs for a full target file system): a file missing from the chain (middle and
 * newest), a truncated and a corrupted data file, wrong `--sequence` order, target exists,
 * target file system full, missing input. Each: exit 1, one clear ERROR line (and nothing else
 * on stderr but log lines), no image or partial image left, the backup files unchanged.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cp, mkdir, open, readdir, rm, stat, truncate } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { testDomain, MiB } from "../helpers/domains.js";
import { assertOk, captureTruth, fileHash, imageHash, logLines, ourBackup, ourRestore, type ToolResult } from "../helpers/our-tool.js";
import { tempDir } from "../helpers/tmp.js";

const execFileP = promisify(execFile);

async function setHashes(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await readdir(dir, { recursive: true })).sort()) {
    const p = join(dir, name);
    if ((await stat(p)).isFile()) out[name] = await fileHash(p);
  }
  return out;
}

/** exit 1, exactly one ERROR line matching `message`, only log lines on stderr. */
function expectOneError(r: ToolResult, message: RegExp, label: string): void {
  assert.equal(r.exitCode, 1, `${label}: exit code\n${r.all}`);
  const errors = logLines(r, "ERROR");
  assert.equal(errors.length, 1, `${label}: one ERROR line\n${r.stderr}`);
  assert.match(errors[0]!, message, label);
  const stray = r.stderr.split("\n").filter((l) => l && !/^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] /.test(l));
  assert.deepEqual(stray, [], `${label}: nothing but log lines on stderr`);
}

async function expectNoImage(out: string, label: string): Promise<void> {
  const left = await readdir(out).catch(() => [] as string[]);
  assert.deepEqual(left.filter((n) => /qcow2|\.partial$/.test(n)), [], `${label}: no image left in ${out}`);
}

test("restore errors: missing, truncated and corrupted files, wrong --sequence, target exists, target file system full", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 32 * MiB }], start: true });
  const work = await tempDir(t, "vnbt-rerr-");
  const set = join(work, "set");
  assertOk(await ourBackup(["-d", d.name, "-l", "full", "-o", set, "-n"]), "full");
  const truth0 = await captureTruth(d);
  await d.writeRandom("sda", 4 * MiB, 4 * MiB, 701);
  assertOk(await ourBackup(["-d", d.name, "-l", "inc", "-o", set, "-n"]), "inc 1");
  const truth1 = await captureTruth(d);
  await d.writeRandom("sda", 12 * MiB, 4 * MiB, 702);
  assertOk(await ourBackup(["-d", d.name, "-l", "inc", "-o", set, "-n"]), "inc 2");
  const truth = await captureTruth(d);
  await d.destroy();
  const inc1 = "sda.inc.virtnbdbackup.1.data";
  const inc2 = "sda.inc.virtnbdbackup.2.data";

  let n = 0;
  /** A copy of the set (mtimes kept), damaged by `damage`, restored; the copy must stay as damaged. */
  const failing = async (label: string, damage: (dir: string) => Promise<void>, message: RegExp, extra: string[] = []) => {
    const dir = join(work, `case${n}`);
    await cp(set, dir, { recursive: true, preserveTimestamps: true });
    await damage(dir);
    const before = await setHashes(dir);
    // Both restore engines: qemu-img convert from our chain server (local default), and NBD
    // writes through qemu-nbd (remote restores).
    for (const engine of ["convert", "nbd-writes"]) {
      const out = join(work, `out${n++}`);
      const r = await ourRestore(["-i", dir, "-o", out, "-n", ...extra], { env: { ...process.env, VIRTNBD_RESTORE_ENGINE: engine } });
      expectOneError(r, message, `${label} (${engine})`);
      await expectNoImage(out, `${label} (${engine})`);
    }
    assert.deepEqual(await setHashes(dir), before, `${label}: backup files unchanged`);
    await rm(dir, { recursive: true });
  };

  await failing("middle inc missing", (dir) => rm(join(dir, inc1)), /needs checkpoint \[virtnbdbackup\.1\].*a file of the chain is missing/);
  await failing("newest inc missing", (dir) => rm(join(dir, inc2)), /Checkpoint \[virtnbdbackup\.2\] is listed in the checkpoint file but no data file of disk \[sda\] holds it/);
  // What is still there restores: the points before the missing file.
  for (const [missing, until, want] of [[inc1, "virtnbdbackup.0", truth0], [inc2, "virtnbdbackup.1", truth1]] as const) {
    const dir = join(work, `partial-set-${until}`);
    await cp(set, dir, { recursive: true, preserveTimestamps: true });
    await rm(join(dir, missing));
    const out = join(work, `partial-out-${until}`);
    assertOk(await ourRestore(["-i", dir, "-o", out, "-n", "--until", until]), `--until ${until} without ${missing}`);
    assert.equal(await imageHash(join(out, "sda.qcow2"), "qcow2"), want["sda"], `--until ${until} without ${missing}`);
  }
  await failing(
    "truncated inc",
    async (dir) => truncate(join(dir, inc1), Math.floor((await stat(join(dir, inc1))).size / 2)),
    new RegExp(`${inc1}.*(runs past the end|truncated|short)`),
  );
  await failing(
    "corrupted byte in inc",
    async (dir) => {
      const fh = await open(join(dir, inc1), "r+");
      try {
        const buf = Buffer.alloc(1);
        await fh.read(buf, 0, 1, 2 * MiB);
        buf[0] = buf[0]! ^ 0xff;
        await fh.write(buf, 0, 1, 2 * MiB);
      } finally {
        await fh.close();
      }
    },
    new RegExp(`${inc1}.*damaged|${inc1}.*CRC|checksum`, "i"),
  );
  await failing(
    "wrong --sequence order",
    async () => undefined,
    /Sequence order is wrong/,
    ["--sequence", ["sda.full.data", inc2, inc1].join(",")],
  );
  await failing("--sequence without a full", async () => undefined, /Sequence must start with full or copy backup\./, ["--sequence", inc1]);

  // Target exists: the existing image is left alone.
  const out = join(work, "twice");
  assertOk(await ourRestore(["-i", set, "-o", out, "-n"]), "first restore");
  assert.equal(await imageHash(join(out, "sda.qcow2"), "qcow2"), truth["sda"]);
  const image = await fileHash(join(out, "sda.qcow2"));
  const again = await ourRestore(["-i", set, "-o", out, "-n"]);
  expectOneError(again, new RegExp(`Target file already exists: \\[${join(out, "sda.qcow2")}\\], won't overwrite\\.`), "target exists");
  assert.equal(await fileHash(join(out, "sda.qcow2")), image, "existing image untouched");
  assert.ok(!(await readdir(out)).some((f) => f.endsWith(".partial")));

  // Target file system full: a 2 MiB tmpfs for 9+ MiB of data.
  const small = join(work, "small");
  await mkdir(small);
  await execFileP("mount", ["-t", "tmpfs", "-o", "size=2m", "vnbt-restore-test", small]);
  try {
    const before = await setHashes(set);
    for (const engine of ["convert", "nbd-writes"]) {
      const full = await ourRestore(["-i", set, "-o", join(small, engine), "-n"], { env: { ...process.env, VIRTNBD_RESTORE_ENGINE: engine } });
      expectOneError(full, /No space left on device|ENOSPC/, `file system full (${engine})`);
      await expectNoImage(join(small, engine), `file system full (${engine})`);
    }
    assert.deepEqual(await setHashes(set), before, "file system full: backup files unchanged");
  } finally {
    await execFileP("umount", [small]);
  }

  // Input problems.
  expectOneError(await ourRestore(["-i", join(work, "nothing-here"), "-o", join(work, "o-x"), "-n"]), /Backup source \[.*nothing-here\] does not exist\./, "no input");
  const empty = join(work, "empty");
  await mkdir(empty);
  expectOneError(await ourRestore(["-i", empty, "-o", join(work, "o-y"), "-n"]), new RegExp(`No data files found in directory: \\[${empty}\\]`), "no data files");
  // A bucket as the target: refused before anything is read or created (no local `s3:` folder).
  const cwd = await tempDir(t);
  const bucket = await ourRestore(["-i", set, "-o", "s3://some-bucket/restored", "-n"], { cwd });
  expectOneError(bucket, /Restore target \[s3:\/\/some-bucket\/restored\] is in object storage: restore into a local directory/, "s3:// target");
  assert.deepEqual(await readdir(cwd), [], "s3:// target: nothing created in the working directory");
});
