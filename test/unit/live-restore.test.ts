// The pure parts of `virtnbdrestore --live`: the boot XML, the socket path, qemu's DAC owner, the backing name.
import { test } from "node:test";
import assert from "node:assert/strict";
import { endOrphanedPull, liveDomainXml, RECONNECT_DELAY_S, type LiveDisk } from "../../src/restore/live-restore.js";
import { liveSocketPath } from "../../src/restore/live-server.js";
import { qemuProcessOwner } from "../../src/libvirt/capabilities.js";
import { nbdBackingName } from "../../src/qemu/img.js";
import { DomainXml } from "../../src/libvirt/domain-xml.js";

const FINAL = `<domain type='kvm'><name>vm</name><devices>
<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/r/sda.qcow2'/><backingStore type='file'><source file='/old.qcow2'/></backingStore><target dev='sda' bus='sata'/></disk>
<disk type='file' device='cdrom'><source file='/iso'/><target dev='sdb'/></disk>
</devices></domain>`;

test("the boot XML: each live disk a qcow2 over the NBD export of its name on the socket; other disks untouched", () => {
  const xml = liveDomainXml(FINAL, [{ disk: "sda" } as LiveDisk], "/run/x.sock", "0b5c7b9e-0000-4000-8000-000000000001");
  const d = DomainXml.parse(xml);
  assert.equal(d.uuid, "0b5c7b9e-0000-4000-8000-000000000001");
  const sda = d.disk("sda")!;
  assert.equal(sda.format, "qcow2");
  assert.equal(sda.sourcePath, "/r/sda.qcow2");
  assert.match(xml, /<backingStore type="network"><format type="raw"\/><source protocol="nbd" name="sda"><host transport="unix" socket="\/run\/x.sock"\/><reconnect delay="60"\/><\/source><\/backingStore>/);
  assert.doesNotMatch(xml, /old\.qcow2/, "the original backing chain is gone");
  assert.equal(RECONNECT_DELAY_S, 60);
  assert.equal(d.disk("sdb")!.backingStores().length, 0);
});

test("the socket path: stable per output directory, short, different for another directory", () => {
  const a = liveSocketPath("/var/lib/libvirt/images/restored/../restored", "/run/virtnbdbackup");
  assert.equal(a, liveSocketPath("/var/lib/libvirt/images/restored", "/run/virtnbdbackup"));
  assert.notEqual(a, liveSocketPath("/var/lib/libvirt/images/other", "/run/virtnbdbackup"));
  assert.match(a, /^\/run\/virtnbdbackup\/live-[0-9a-f]{16}\.sock$/);
  assert.ok(a.length < 108);
});

test("qemu's owner from the capabilities' DAC label of the domain type; none without DAC", () => {
  const caps = `<capabilities><host><secmodel><model>apparmor</model><doi>0</doi></secmodel><secmodel><model>dac</model><doi>0</doi>
    <baselabel type='kvm'>+64055:+994</baselabel><baselabel type='qemu'>+107:+107</baselabel></secmodel></host></capabilities>`;
  assert.deepEqual(qemuProcessOwner(caps, "kvm"), { uid: 64055, gid: 994 });
  assert.deepEqual(qemuProcessOwner(caps, "qemu"), { uid: 107, gid: 107 });
  assert.equal(qemuProcessOwner("<capabilities><host/></capabilities>", "kvm"), null);
});

test("the backing name is qemu's json: pseudo-protocol for raw over NBD on a unix socket", () => {
  const name = nbdBackingName("/run/x.sock", "vda");
  assert.ok(name.startsWith("json:"));
  assert.deepEqual(JSON.parse(name.slice(5)), { driver: "raw", file: { driver: "nbd", server: { type: "unix", path: "/run/x.sock" }, export: "vda" } });
});

test("a pull the dead run left running is ended before the backing is reconnected; without one nothing is done", async () => {
  const calls: string[] = [];
  let polls = 0;
  const dying = {
    blockJobInfo: async () => (calls.includes("abort") && ++polls > 2 ? null : { type: 1, bandwidth: 0, cur: 5, end: 10 }),
    blockJobAbort: async () => void calls.push("abort"),
  };
  const lines: string[] = [];
  await endOrphanedPull(dying, "sda", { info: (m: string) => lines.push(m) });
  assert.deepEqual(calls, ["abort"]);
  assert.deepEqual(lines, ["Ending the copy of disk [sda] that the earlier run started."]);
  const none = { blockJobInfo: async () => null, blockJobAbort: async () => assert.fail("nothing to end") };
  await endOrphanedPull(none, "sda", { info: () => assert.fail("nothing to say") });
});
