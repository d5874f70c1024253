// The persistent dirty bitmaps in disk images, seen and removed online (QMP through libvirt)
// and offline (qemu-img), on a TCG test domain: checkpoint bitmaps across hot-plug, resize and
// redefinition; bitmaps a killed writer left "in-use", which qemu then loads as inconsistent.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { listBlockBitmaps, removeBlockBitmap, type DiskBlockNode } from "../../src/libvirt/block-bitmaps.js";
import { buildCheckpointXml } from "../../src/libvirt/backup-xml.js";
import { QmpError } from "../../src/libvirt/qmp.js";
import { LocalHost } from "../../src/host/local.js";
import { QemuImgError } from "../../src/qemu/img.js";
import { listImageBitmaps, removeImageBitmap } from "../../src/qemu/img-bitmaps.js";
import { MiB, testDomain, type TestDomain } from "../helpers/domains.js";

const execFileP = promisify(execFile);
const host = new LocalHost();

function diskNode(nodes: DiskBlockNode[], target: string): DiskBlockNode {
  const n = nodes.find((x) => x.target === target);
  assert.ok(n, `no block node for ${target} in ${JSON.stringify(nodes)}`);
  return n;
}

async function liveBitmaps(d: TestDomain, target: string) {
  return diskNode(await listBlockBitmaps(d.domain), target).bitmaps;
}

async function addImageBitmap(path: string, name: string): Promise<void> {
  await execFileP("qemu-img", ["bitmap", "--add", "-f", "qcow2", path, name]);
}

test("online: checkpoint bitmaps listed per disk with their state, kept across hot-plug, resize and a redefinition, removed through QMP", async (t) => {
  const d = await testDomain(t, { start: true, scsiController: true });
  await d.attachDisk("sdb", 16 * MiB);
  await d.writePattern("sdb", MiB, 64 * 1024, 0x5b);
  const cp = await d.domain.checkpointCreateXML(buildCheckpointXml({ name: "virtnbdbackup.0", disks: ["sda", "sdb"] }));
  cp.free();

  const nodes = await listBlockBitmaps(d.domain);
  assert.deepEqual(nodes.map((n) => n.target), ["sda", "sdb"]);
  for (const n of nodes) {
    assert.match(n.node, /^libvirt-\d+-format$/);
    assert.deepEqual(n.bitmaps, [{ name: "virtnbdbackup.0", granularity: 65536, recording: true, busy: false, persistent: true, inconsistent: false, count: 0 }]);
  }
  assert.equal(diskNode(nodes, "sda").qdev, "sata0-0-0");

  // Writes after the checkpoint are counted; a grown disk keeps its bitmap.
  await d.writePattern("sda", 2 * MiB, 4096, 0x21);
  assert.equal((await liveBitmaps(d, "sda"))[0]!.count, 65536);
  await d.blockResize("sdb", 32 * MiB);
  assert.equal((await d.domain.blockInfo("sdb")).capacity, 32 * MiB);
  assert.deepEqual((await liveBitmaps(d, "sdb")).map((b) => [b.name, b.recording, b.inconsistent]), [["virtnbdbackup.0", true, false]]);
  assert.equal(await d.diskHash("sdb"), d.expectedHash("sdb"));

  // Undefined and defined again while running: libvirt 9.0 drops checkpoint metadata only of
  // an inactive domain, so it keeps this one (the shut-off case is the last test's).
  await d.redefine();
  assert.deepEqual((await d.domain.listAllCheckpoints()).map((c) => c.name), ["virtnbdbackup.0"]);
  assert.equal(await d.domain.isPersistent(), true);
  assert.deepEqual((await liveBitmaps(d, "sda")).map((b) => b.name), ["virtnbdbackup.0"]);

  const sda = diskNode(await listBlockBitmaps(d.domain), "sda");
  await removeBlockBitmap(d.domain, sda.node, "virtnbdbackup.0");
  assert.deepEqual(await liveBitmaps(d, "sda"), []);
  await assert.rejects(removeBlockBitmap(d.domain, sda.node, "virtnbdbackup.0"), (e: unknown) => {
    assert.ok(e instanceof QmpError, String(e));
    assert.match(e.message, /^QMP block-dirty-bitmap-remove on domain vnbt-\S+ failed: Dirty bitmap 'virtnbdbackup\.0' not found$/);
    return true;
  });
  // While qemu has the image open, qemu-img cannot write it.
  await assert.rejects(removeImageBitmap(host, d.disk("sdb").path, "virtnbdbackup.0"), (e: unknown) => {
    assert.ok(e instanceof QemuImgError, String(e));
    assert.match(e.message, /lock/);
    return true;
  });

  // Unplugged, the disk's qemu closes the image cleanly: its bitmap is stored, not in-use.
  const sdb = await d.detachDisk("sdb");
  assert.deepEqual((await listBlockBitmaps(d.domain)).map((n) => n.target), ["sda"]);
  assert.deepEqual(await listImageBitmaps(host, sdb.path), [{ name: "virtnbdbackup.0", granularity: 65536, recording: true, inUse: false }]);

  // Removed through QMP while running: gone from the image too.
  await d.destroy();
  assert.deepEqual(await listImageBitmaps(host, d.disk("sda").path), []);
  assert.equal(await d.diskHash("sda"), d.expectedHash("sda"));
});

test("offline: a bitmap left in-use by a killed writer is listed and removed with qemu-img; qemu loads one as inconsistent and QMP removes it", async (t) => {
  const d = await testDomain(t, { start: true });
  const image = d.disk("sda").path;
  (await d.domain.checkpointCreateXML(buildCheckpointXml({ name: "virtnbdbackup.0", disks: ["sda"] }))).free();
  // A bitmap qemu created lives in its memory only, until qemu closes the image.
  assert.deepEqual(await listImageBitmaps(host, image), []);
  // destroy (SIGTERM first, qemu exits on its own) stores it, not in-use.
  await d.destroy();
  assert.deepEqual(await listImageBitmaps(host, image), [{ name: "virtnbdbackup.0", granularity: 65536, recording: true, inUse: false }]);
  // A qemu that loaded it flags it in-use in the image for as long as it runs.
  await d.start();
  assert.deepEqual(await listImageBitmaps(host, image), [{ name: "virtnbdbackup.0", granularity: 65536, recording: true, inUse: true }]);
  await d.destroy();

  await addImageBitmap(image, "virtnbdbackup.1");
  await d.crashQemuNbdOn("sda");
  assert.deepEqual(await listImageBitmaps(host, image), [
    { name: "virtnbdbackup.0", granularity: 65536, recording: true, inUse: true },
    { name: "virtnbdbackup.1", granularity: 65536, recording: true, inUse: true },
  ]);
  await removeImageBitmap(host, image, "virtnbdbackup.0");
  assert.deepEqual((await listImageBitmaps(host, image)).map((b) => b.name), ["virtnbdbackup.1"]);
  await assert.rejects(removeImageBitmap(host, image, "virtnbdbackup.0"), (e: unknown) => {
    assert.ok(e instanceof QemuImgError, String(e));
    assert.match(e.message, /^qemu-img bitmap --remove \[.*sda\.qcow2\] \[virtnbdbackup\.0\] failed: .+/);
    assert.doesNotMatch(e.message, /\n/);
    return true;
  });

  await d.start();
  // The domain starts on the image; qemu loads the in-use bitmap as inconsistent, not recording.
  assert.deepEqual(await liveBitmaps(d, "sda"), [
    { name: "virtnbdbackup.1", granularity: 65536, recording: false, busy: false, persistent: true, inconsistent: true, count: 0 },
  ]);
  const { node } = diskNode(await listBlockBitmaps(d.domain), "sda");
  await removeBlockBitmap(d.domain, node, "virtnbdbackup.1");
  assert.deepEqual(await liveBitmaps(d, "sda"), []);
  await d.destroy();
  assert.deepEqual(await listImageBitmaps(host, image), []);
  assert.equal(await d.diskHash("sda"), d.expectedHash("sda"));
});

test("drift helpers on a shut-off domain: disks attached, grown and detached in the definition; redefine drops checkpoint metadata", async (t) => {
  const d = await testDomain(t);
  const vdb = await d.attachDisk("vdb", 8 * MiB);
  await d.writePattern("vdb", 0, 4096, 0x7c);
  await d.blockResize("vdb", 12 * MiB);
  assert.equal(await d.diskHash("vdb"), d.expectedHash("vdb"));
  await d.start();
  // A virtio disk: qemu names the device by a QOM path below the alias.
  assert.equal(diskNode(await listBlockBitmaps(d.domain), "vdb").qdev, "/machine/peripheral/virtio-disk1/virtio-backend");
  await d.writePattern("vdb", 10 * MiB, 4096, 0x7d);
  assert.equal(await d.diskHash("vdb"), d.expectedHash("vdb"));
  (await d.domain.checkpointCreateXML(buildCheckpointXml({ name: "virtnbdbackup.0", disks: ["sda", "vdb"] }))).free();
  await d.destroy();
  await d.redefine();
  assert.deepEqual(await d.domain.listAllCheckpoints(), []);
  assert.deepEqual((await listImageBitmaps(host, vdb.path)).map((b) => b.name), ["virtnbdbackup.0"]);
  await d.detachDisk("vdb");
  assert.deepEqual(d.disks.map((x) => x.target), ["sda"]);
  await d.start();
  assert.deepEqual((await listBlockBitmaps(d.domain)).map((n) => n.target), ["sda"]);
});
