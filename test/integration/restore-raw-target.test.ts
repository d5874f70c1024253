/**
 * `--to-raw` (abbbi/virtnbdbackup #321; docs/behaviour.md, "Raw targets"): a chain of the 2.47
 * fixture straight into a new raw file and into a loop block device, bit-exact against the
 * qcow2 restore; a device with a filesystem refused without --force (and left as it was), an
 * existing file and a too small device refused. Real qemu-img, wipefs, losetup; no libvirt.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execa } from "execa";
import { existsSync } from "node:fs";
import { truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { assertOk, fileHash, imageHash, logLines, ourRestore, ROOT } from "../helpers/our-tool.js";
import { tempDir } from "../helpers/tmp.js";

const SET = join(ROOT, "fixtures/upstream-2.47/plain");
const SIZE = 4 * 1024 * 1024;

async function loopDevice(t: { after(fn: () => Promise<void>): void }, file: string): Promise<string | null> {
  if (process.getuid?.() !== 0) return null;
  const r = await execa("losetup", ["-f", "--show", file], { reject: false });
  if (r.exitCode !== 0) return null;
  const dev = String(r.stdout).trim();
  t.after(async () => void (await execa("losetup", ["-d", dev], { reject: false })));
  return dev;
}

test("--to-raw: a new raw file and a block device, bit-exact; a filesystem needs --force; nothing written over otherwise", async (t) => {
  const work = await tempDir(t, "vnbt-rawtarget-");
  assertOk(await ourRestore(["-i", SET, "-o", join(work, "qcow"), "-n"]), "qcow2 restore");
  const truth = await imageHash(join(work, "qcow", "sda.qcow2"), "qcow2");

  const file = join(work, "sda.raw");
  const r = assertOk(await ourRestore(["-i", SET, "-o", file, "--to-raw", "-n"]), "--to-raw into a new file");
  assert.match(r.stderr, /Restoring disk \[sda\] into new raw image/);
  assert.equal(await fileHash(file), truth, "the raw file holds the disk");
  assert.ok(!existsSync(`${file}.partial`));
  const again = await ourRestore(["-i", SET, "-o", file, "--to-raw", "-n"]);
  assert.equal(again.exitCode, 1);
  assert.deepEqual(logLines(again, "ERROR").map((l) => l.replace(/^.*?\]: /, "")), [`Target [${file}] exists and is not a block device: won't overwrite it.`]);
  assert.equal(await fileHash(file), truth, "left as it was");
  const withC = await ourRestore(["-i", SET, "-o", join(work, "x.raw"), "--to-raw", "-c", "-n"]);
  assert.equal(withC.exitCode, 1);
  assert.match(logLines(withC, "ERROR")[0]!, /does not go with -c, -D, --sequence or --raw/);

  const backing = join(work, "device.img");
  await writeFile(backing, "");
  await truncate(backing, SIZE);
  const dev = await loopDevice(t, backing);
  if (!dev) return t.diagnostic("no loop device here (not root, or losetup refused): the device part is skipped");
  await execa("mkfs.ext4", ["-q", "-F", dev]);
  const before = await fileHash(dev);
  const refused = await ourRestore(["-i", SET, "-o", dev, "--to-raw", "-n"]);
  assert.equal(refused.exitCode, 1);
  assert.match(logLines(refused, "ERROR")[0]!, new RegExp(`Block device \\[${dev}\\] holds \\[ext4 at 0x[0-9a-f]+\\]: restore over it only with --force\\.`));
  assert.equal(await fileHash(dev), before, "the filesystem is untouched");
  const forced = assertOk(await ourRestore(["-i", SET, "-o", dev, "--to-raw", "--force", "-n"]), "--to-raw --force");
  assert.match(forced.stderr, /WARNING .*Writing over \[ext4/);
  assert.equal(await fileHash(dev), truth, "the device holds the disk, old data zeroed");

  const small = join(work, "small.img");
  await writeFile(small, "");
  await truncate(small, SIZE / 2);
  const smallDev = await loopDevice(t, small);
  if (!smallDev) return;
  const tooSmall = await ourRestore(["-i", SET, "-o", smallDev, "--to-raw", "--force", "-n"]);
  assert.equal(tooSmall.exitCode, 1);
  assert.match(logLines(tooSmall, "ERROR")[0]!, /holds 2097152 bytes, disk \[sda\] needs 4194304: too small/);
});
