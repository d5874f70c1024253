// The Linux test guest (test/helpers/linux-guest.ts) under real libvirtd: it boots Debian's
// kernel with the busybox initramfs, reads the marker from its ext4 data disk, ticks into a log
// on that disk, stops cleanly on request, and the shut-off image is consistent and holds every
// tick the console showed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { DomainXml } from "../../src/libvirt/index.js";
import { GUEST_MODULES, installedKernel, linuxGuest, moduleLoadOrder, moduleName, newcArchive } from "../helpers/linux-guest.js";

test("the initramfs takes the data disk's modules in dependency order, in a newc archive", async () => {
  assert.equal(moduleName("kernel/arch/x86/crypto/crc32c-intel.ko.xz"), "crc32c_intel");
  const kernel = await installedKernel();
  const order = (await moduleLoadOrder(kernel.modulesDir, GUEST_MODULES)).map((p) => p.replace(/^.*\//, ""));
  for (const [before, after] of [["virtio_ring.ko", "virtio.ko"], ["virtio.ko", "virtio_pci.ko"], ["jbd2.ko", "ext4.ko"], ["mbcache.ko", "ext4.ko"]] as const) {
    if (order.includes(before)) assert.ok(order.indexOf(before) < order.indexOf(after), `${before} before ${after} in ${order.join(" ")}`);
  }
  const archive = newcArchive([{ name: "init", mode: 0o100755, data: Buffer.from("abc") }]);
  assert.equal(archive.toString("latin1", 0, 6), "070701");
  assert.equal(archive.length % 4, 0);
  assert.match(archive.toString("latin1"), /TRAILER!!!\0/);
});

for (const format of ["qcow2", "raw"] as const) {
  test(`a Linux guest boots, ticks into its ${format} data disk and stops cleanly`, async (t) => {
    const marker = `vnbt-marker-${format}-${process.pid}`;
    const guest = await linuxGuest(t, { marker, format });
    const xml = DomainXml.parse(await guest.domain.domain.xmlDesc(0));
    assert.deepEqual(xml.disks().map((d) => [d.target, d.bus]), [["vda", "virtio"]]);

    await guest.start();
    const { content, seconds } = await guest.waitForMarker();
    t.diagnostic(`${format}: MARKER after ${seconds.toFixed(2)} s (kernel ${guest.boot.kernelVersion}, ${guest.boot.kernel})`);
    assert.equal(content, marker);
    await guest.waitForLine(/^TICK 3$/);
    const last = await guest.stop();

    const ticks = await guest.ticksSeen();
    assert.ok(last >= 3, `last tick ${last}`);
    assert.deepEqual(ticks, Array.from({ length: last }, (_, i) => i + 1));
    assert.equal(await guest.domain.isRunning(), false);
    assert.match(await guest.fsck(), /vnbt-data: \d+\/\d+ files/);
    assert.equal(await guest.readFile("tick.log"), ticks.map((n) => `tick ${n}\n`).join(""));
    assert.equal((await guest.readFile("marker")).trim(), marker);

    await guest.cleanup();
    assert.equal(existsSync(guest.domain.dir), false);
  });
}
