/**
 * virtnbdrestore options on a set made by our virtnbdbackup from a real UEFI domain (OVMF loader +
 * nvram, two qcow2 disks and a raw disk; libvirtd, qemu-nbd, qemu-img): `-c -D -N -C` defines a
 * domain that starts with its own nvram and loader (the original's untouched), `-d` one disk, `--raw`, `-A`,
 * `--compress`, and restoring without a reachable libvirtd. Images are compared bit-exact with the
 * true disk content read through NBD at backup time.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { chmod, mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Connection } from "../../src/libvirt/connection.js";
import * as C from "../../src/libvirt/constants.js";
import { DomainXml } from "../../src/libvirt/domain-xml.js";
import { testDomain, MiB } from "../helpers/domains.js";
import { assertOk, captureTruth, fileHash, imageHash, imageInfo, logLines, ourBackup, ourRestore, sh } from "../helpers/our-tool.js";
import { tempDir } from "../helpers/tmp.js";


test("restore options: -c -D -N -C (domain starts, nvram restored), -d, --raw, -A, --compress, no libvirtd", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 32 * MiB }, { size: 16 * MiB }, { format: "raw", size: 8 * MiB }], cdrom: true });
  // UEFI: a read-only pflash loader and an nvram file (both get saved with every backup).
  const { loader, nvram } = await d.addUefi();
  await d.start();

  const work = await tempDir(t, "vnbt-ropt-");
  await chmod(work, 0o755); // qemu (libvirt-qemu) opens the restored images when the copy starts
  const set = join(work, "set");
  const full = assertOk(await ourBackup(["-d", d.name, "-l", "full", "--raw", "-o", set, "-n"]), "full --raw");
  assert.match(full.stderr, /INFO .*Skipping attached \[cdrom\] device: \[sdd\]\./);
  await d.writeRandom("sda", 6 * MiB, MiB, 601);
  await d.writePattern("sdb", 2 * MiB, 256 * 1024, 0x66);
  assertOk(await ourBackup(["-d", d.name, "-l", "inc", "-o", set, "-n"]), "inc");
  const truth = await captureTruth(d);
  const names = await readdir(set);
  assert.ok(names.includes("OVMF_CODE_4M.fd.virtnbdbackup.0") && names.includes(`${d.name}_VARS.fd.virtnbdbackup.1`), names.join(" "));
  const savedNvram = await fileHash(join(set, `${d.name}_VARS.fd.virtnbdbackup.1`));

  // The original stays defined with its nvram; -c -D brings a copy with its own nvram and loader.
  await d.destroy();
  const originalNvram = await fileHash(nvram);
  await writeFile(nvram, Buffer.alloc(4096, 0x11), { flag: "r+" }); // the original's NVRAM moved on
  const changedNvram = await fileHash(nvram);
  assert.notEqual(changedNvram, originalNvram);
  const restoredName = `${d.name}-restored`;
  t.after(async () => {
    const conn = await Connection.open("qemu:///system");
    try {
      const dom = await conn.lookupDomain(restoredName).catch(() => null);
      if (dom) {
        if (await dom.isActive()) await dom.destroy();
        await dom.undefine(C.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM);
        dom.free();
      }
    } finally {
      await conn.close();
    }
  });
  const out = join(work, "defined");
  const r = assertOk(await ourRestore(["-i", set, "-o", out, "-n", "-c", "-D", "-N", restoredName, "-C", "restored.xml"]), "-c -D");
  assert.ok(logLines(r, "WARNING").every((l) => !/nvram/i.test(l)), r.stderr);
  const ownNvram = join(out, `${restoredName}_VARS.fd`);
  const ownLoader = join(out, `${restoredName}_OVMF_CODE_4M.fd`);
  assert.equal(await fileHash(ownNvram), savedNvram, "the copy's own nvram, from the newest saved one");
  assert.equal(await fileHash(nvram), changedNvram, "the original's nvram untouched");
  assert.equal(await fileHash(ownLoader), await fileHash(loader), "a loader that is no system file: the copy's own");
  assert.equal(await imageHash(join(out, "sda.qcow2"), "qcow2"), truth["sda"]);
  assert.equal(await imageHash(join(out, "sdb.qcow2"), "qcow2"), truth["sdb"]);
  assert.ok(!(await readdir(out)).includes("sdc.raw"), "raw disk not restored without --raw");
  const config = DomainXml.parse(await readFile(join(out, "restored.xml"), "utf8"));
  assert.equal(config.name, restoredName);
  assert.deepEqual([config.osPaths().nvram, config.osPaths().loader], [ownNvram, ownLoader], "the copy's config points at its own files");
  assert.equal(config.uuid, null);
  assert.deepEqual(
    config.disks().map((x) => [x.target, x.sourcePath]),
    [
      ["sda", join(out, "sda.qcow2")],
      ["sdb", join(out, "sdb.qcow2")],
    ],
  );
  const conn = await Connection.open("qemu:///system");
  try {
    const dom = await conn.lookupDomain(restoredName);
    await dom.create();
    assert.equal(await dom.isActive(), true, "the defined domain starts");
    await dom.destroy();
    dom.free();
  } finally {
    await conn.close();
  }

  // -D under the name that exists now: refused before any disk is restored, no directory left.
  const again = join(work, "again");
  const taken = await ourRestore(["-i", set, "-o", again, "-n", "-c", "-D", "-N", restoredName]);
  assert.equal(taken.exitCode, 1, taken.all);
  const takenErrors = logLines(taken, "ERROR");
  assert.equal(takenErrors.length, 1, taken.stderr);
  assert.match(takenErrors[0]!, new RegExp(`a domain named \\[${restoredName}\\] already exists`));
  assert.doesNotMatch(taken.stderr, /Create virtual disk/, "no disk restored");
  await assert.rejects(stat(again), { code: "ENOENT" }, "no output directory");

  // -d: one disk only.
  const one = join(work, "one");
  assertOk(await ourRestore(["-i", set, "-o", one, "-n", "-d", "sdb"]), "-d sdb");
  assert.deepEqual((await readdir(one)).filter((n) => !n.endsWith(".xml")), ["sdb.qcow2"]);
  assert.equal(await imageHash(join(one, "sdb.qcow2"), "qcow2"), truth["sdb"]);

  // --raw: the raw disk's image copied back, and kept in the adjusted config.
  const raw = join(work, "raw");
  assertOk(await ourRestore(["-i", set, "-o", raw, "-n", "--raw", "-c"]), "--raw -c");
  assert.equal(await fileHash(join(raw, "sdc.raw")), truth["sdc"]);
  assert.equal(await imageHash(join(raw, "sda.qcow2"), "qcow2"), truth["sda"]);
  const rawConfig = DomainXml.parse(await readFile(join(raw, "vmconfig.xml"), "utf8"));
  assert.equal(rawConfig.disk("sdc")?.sourcePath, join(raw, "sdc.raw"));
  assert.equal(rawConfig.name, `restore_${d.name}`);

  // -A: fully preallocated image.
  const pre = join(work, "prealloc");
  assertOk(await ourRestore(["-i", set, "-o", pre, "-n", "-d", "sda", "-A"]), "-A");
  assert.equal(await imageHash(join(pre, "sda.qcow2"), "qcow2"), truth["sda"]);
  const actual = Number((await imageInfo(join(pre, "sda.qcow2")))["actual-size"]);
  assert.ok(actual >= 32 * MiB, `preallocated: actual size ${actual}`);

  // --compress: written through qemu's compress driver.
  const comp = join(work, "compress");
  assertOk(await ourRestore(["-i", set, "-o", comp, "-n", "-d", "sda", "--compress"]), "--compress");
  assert.equal(await imageHash(join(comp, "sda.qcow2"), "qcow2"), truth["sda"]);
  const check = await sh("qemu-img", ["check", join(comp, "sda.qcow2")]);
  const pct = Number(/([\d.]+)% compressed clusters/.exec(check)?.[1]);
  assert.ok(pct > 0, `compressed clusters: ${check}`);

  // No libvirtd reachable: a plain restore does not need it; -D does, and says so.
  const bad = "qemu:///system?socket=/nonexistent/libvirt-sock";
  const nolv = join(work, "no-libvirt");
  const noLibvirt = assertOk(await ourRestore(["-i", set, "-o", nolv, "-n", "-d", "sda", "-U", bad]), "restore without libvirtd");
  assert.ok(logLines(noLibvirt, "WARNING").some((l) => l.includes("Unable to connect libvirt: [")), noLibvirt.stderr);
  assert.equal(await imageHash(join(nolv, "sda.qcow2"), "qcow2"), truth["sda"]);
  const nolvD = join(work, "no-libvirt-D");
  const failed = await ourRestore(["-i", set, "-o", nolvD, "-n", "-d", "sda", "-U", bad, "-D"]);
  assert.equal(failed.exitCode, 1, failed.all);
  assert.ok(logLines(failed, "ERROR").some((l) => /Unable to connect libvirt: \[.*\]: cannot define VM$/.test(l)), failed.stderr);
  assert.ok(!(await readdir(nolvD).catch(() => [] as string[])).some((n) => n.includes("qcow2")), "nothing restored");

  // Into a storage pool's directory: the pool is refreshed, so libvirt lists the new image.
  const poolDir = join(work, "pool");
  await mkdir(poolDir);
  const pool = `${d.name}-pool`;
  await sh("virsh", ["-c", "qemu:///system", "pool-create-as", pool, "dir", "--target", poolDir]);
  t.after(() => sh("virsh", ["-c", "qemu:///system", "pool-destroy", pool]).catch(() => undefined));
  const refreshed = assertOk(await ourRestore(["-i", set, "-o", poolDir, "-n", "-d", "sda"]), "restore into a pool");
  assert.match(refreshed.stderr, new RegExp(`Refreshed contents of libvirt pool \\[${pool}\\]`));
  assert.match(await sh("virsh", ["-c", "qemu:///system", "vol-list", pool]), /sda\.qcow2/);
});
