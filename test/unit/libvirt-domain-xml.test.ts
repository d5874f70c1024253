import { test } from "node:test";
import assert from "node:assert/strict";
import { DomainXml, XmlError, parseXml } from "../../src/libvirt/domain-xml.js";

const XML = `<domain type='kvm' id='7' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>vm1</name>
  <uuid>6f0c3a3e-2a4e-4e59-9c0a-3b1f3e4f5a6b</uuid>
  <metadata>
    <my:info xmlns:my='urn:example:my'><my:owner>ops &amp; dev</my:owner></my:info>
  </metadata>
  <memory unit='KiB'>1048576</memory>
  <os firmware='efi'>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>
    <nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>/var/lib/libvirt/qemu/nvram/vm1_VARS.fd</nvram>
    <kernel>/boot/vmlinuz</kernel>
    <boot dev='hd'/>
  </os>
  <devices>
    <!-- the system disk -->
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' discard='unmap'/>
      <source file='/var/lib/libvirt/images/vm1.snap2' index='3'/>
      <backingStore type='file' index='2'>
        <format type='qcow2'/>
        <source file='/var/lib/libvirt/images/vm1.snap1'/>
        <backingStore type='file' index='1'>
          <format type='qcow2'/>
          <source file='/var/lib/libvirt/images/vm1.qcow2'/>
          <backingStore/>
        </backingStore>
      </backingStore>
      <target dev='vda' bus='virtio'/>
      <alias name='virtio-disk0'/>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw'/>
      <source dev='/dev/vg0/data'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw'/>
      <source protocol='rbd' name='pool/image'>
        <host name='mon1.example' port='6789'/>
        <host name='mon2.example' port='6789'/>
      </source>
      <target dev='vdc' bus='virtio'/>
    </disk>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source pool='default' volume='vm1-data.qcow2'/>
      <target dev='vdd' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/images/ext.qcow2'>
        <dataStore type='file'>
          <format type='raw'/>
          <source file='/images/ext.raw'/>
        </dataStore>
      </source>
      <target dev='vde' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <disk type='file' device='floppy'>
      <driver name='qemu' type='raw'/>
      <source file='/images/floppy.img'/>
      <target dev='fda' bus='fdc'/>
    </disk>
    <disk type='block' device='lun'>
      <driver name='qemu' type='raw'/>
      <source dev='/dev/sdx'/>
      <target dev='sdb' bus='scsi'/>
    </disk>
    <tpm model='tpm-crb'>
      <backend type='emulator' version='2.0'/>
    </tpm>
  </devices>
  <qemu:capabilities>
    <qemu:add capability='incremental-backup'/>
  </qemu:capabilities>
</domain>
`;

test("reads name, uuid, type", () => {
  const d = DomainXml.parse(XML);
  assert.equal(d.name, "vm1");
  assert.equal(d.uuid, "6f0c3a3e-2a4e-4e59-9c0a-3b1f3e4f5a6b");
  assert.equal(d.type, "kvm");
});

test("active: libvirt writes an id only into a running instance's XML", () => {
  assert.equal(DomainXml.parse(XML).active, true);
  assert.equal(DomainXml.parse("<domain type='kvm'><name>off</name></domain>").active, false);
  assert.equal(DomainXml.parse("<domain type='kvm' id='-1'><name>odd</name></domain>").active, false);
});

test("lists every devices/disk in document order with target, device, bus, format, discard", () => {
  const disks = DomainXml.parse(XML).disks();
  assert.deepEqual(
    disks.map((d) => [d.target, d.device, d.bus, d.format, d.type]),
    [
      ["vda", "disk", "virtio", "qcow2", "file"],
      ["vdb", "disk", "virtio", "raw", "block"],
      ["vdc", "disk", "virtio", "raw", "network"],
      ["vdd", "disk", "virtio", "qcow2", "volume"],
      ["vde", "disk", "virtio", "qcow2", "file"],
      ["sda", "cdrom", "sata", "raw", "file"],
      ["fda", "floppy", "fdc", "raw", "file"],
      ["sdb", "lun", "scsi", "raw", "block"],
    ],
  );
  assert.equal(disks[0]!.discard, "unmap");
  assert.equal(disks[1]!.discard, null);
  assert.equal(disks[0]!.driverName, "qemu");
});

test("device defaults to disk when the attribute is missing", () => {
  const d = DomainXml.parse(
    "<domain><devices><disk type='file'><source file='/a'/><target dev='vda'/></disk></devices></domain>",
  );
  assert.equal(d.disks()[0]!.device, "disk");
  assert.equal(d.disks()[0]!.format, null);
});

test("source of file, block, network, volume disks", () => {
  const [file, block, net, vol, , cdrom] = DomainXml.parse(XML).disks();
  assert.equal(file!.source!.file, "/var/lib/libvirt/images/vm1.snap2");
  assert.equal(file!.sourcePath, "/var/lib/libvirt/images/vm1.snap2");
  assert.equal(block!.source!.dev, "/dev/vg0/data");
  assert.equal(block!.sourcePath, "/dev/vg0/data");
  assert.equal(net!.source!.protocol, "rbd");
  assert.equal(net!.source!.name, "pool/image");
  assert.deepEqual(net!.source!.hosts, [
    { name: "mon1.example", port: "6789", transport: null, socket: null },
    { name: "mon2.example", port: "6789", transport: null, socket: null },
  ]);
  assert.equal(net!.sourcePath, null);
  assert.equal(vol!.source!.pool, "default");
  assert.equal(vol!.source!.volume, "vm1-data.qcow2");
  assert.equal(vol!.sourcePath, null);
  assert.equal(cdrom!.source, null);
});

test("backing store chain, outermost first, empty terminator skipped", () => {
  const [file, block] = DomainXml.parse(XML).disks();
  assert.deepEqual(file!.backingStoreFiles(), ["/var/lib/libvirt/images/vm1.snap1", "/var/lib/libvirt/images/vm1.qcow2"]);
  assert.deepEqual(file!.backingStores()[0], {
    type: "file",
    format: "qcow2",
    file: "/var/lib/libvirt/images/vm1.snap1",
    dev: null,
  });
  assert.deepEqual(block!.backingStoreFiles(), []);
});

test("data store", () => {
  const disks = DomainXml.parse(XML).disks();
  assert.deepEqual(disks[4]!.dataStore, { type: "file", format: "raw", file: "/images/ext.raw", dev: null });
  assert.equal(disks[0]!.dataStore, null);
});

test("os paths and tpm", () => {
  const d = DomainXml.parse(XML);
  assert.deepEqual(d.osPaths(), {
    loader: "/usr/share/OVMF/OVMF_CODE_4M.fd",
    nvram: "/var/lib/libvirt/qemu/nvram/vm1_VARS.fd",
    kernel: "/boot/vmlinuz",
  });
  assert.deepEqual(d.tpms(), [{ model: "tpm-crb", backendType: "emulator", backendVersion: "2.0", persistentState: null }]);
  assert.deepEqual(DomainXml.parse("<domain><name>x</name></domain>").osPaths(), {});
  assert.deepEqual(DomainXml.parse("<domain><name>x</name></domain>").tpms(), []);
});

test("qemu capability lookup uses the qemu namespace", () => {
  assert.equal(DomainXml.parse(XML).hasQemuCapability("incremental-backup"), true);
  assert.equal(DomainXml.parse(XML).hasQemuCapability("other"), false);
  const wrongNs = `<domain xmlns:q='urn:other'><q:capabilities><q:add capability='incremental-backup'/></q:capabilities></domain>`;
  assert.equal(DomainXml.parse(wrongNs).hasQemuCapability("incremental-backup"), false);
});

test("unchanged documents round-trip: same tree, unknown elements, namespaces and comments kept", () => {
  const out = DomainXml.parse(XML).toString();
  assert.match(out, /<my:owner>ops &amp; dev<\/my:owner>/);
  assert.match(out, /<!-- the system disk -->/);
  assert.match(out, /<qemu:add capability="incremental-backup"\/>/);
  assert.match(out, /xmlns:qemu="http:\/\/libvirt.org\/schemas\/domain\/qemu\/1.0"/);
  // Parsing the output again gives the same serialization (a fixed point).
  assert.equal(DomainXml.parse(out).toString(), out);
  // Byte-identical to the input except for attribute quoting (the fixture has no quotes in values).
  assert.equal(out.replace(/"/g, "'"), XML.trimEnd());
});

test("restore-style edits: source file, data store, backing store, uuid, name, disk removal", () => {
  const d = DomainXml.parse(XML);
  const [vda, vdb, , vdd, vde] = d.disks();
  vda!.setSourceFile("/restore/vm1.snap2");
  assert.equal(vda!.removeFirstBackingStore(), true);
  assert.equal(vda!.removeFirstBackingStore(), false);
  vdb!.setSourceFile("/restore/data");
  vdb!.setSourceDev("/restore/data");
  vdd!.type = "file";
  vdd!.removeSourceAttribute("pool");
  vdd!.removeSourceAttribute("volume");
  vdd!.setSourceFile("/restore/vm1-data.qcow2");
  assert.equal(vde!.setDataStorePath("/restore/ext.raw"), true);
  assert.equal(vda!.setDataStorePath("/x"), false);
  assert.equal(d.removeDisk("sda"), true);
  assert.equal(d.removeDisk("nope"), false);
  d.disk("fda")!.remove();
  assert.equal(d.removeUuid(), true);
  assert.equal(d.removeUuid(), false);
  d.name = "restore_vm1";

  const again = DomainXml.parse(d.toString());
  assert.equal(again.name, "restore_vm1");
  assert.equal(again.uuid, null);
  assert.deepEqual(
    again.disks().map((x) => x.target),
    ["vda", "vdb", "vdc", "vdd", "vde", "sdb"],
  );
  const [a, b, , v, e] = again.disks();
  assert.equal(a!.source!.file, "/restore/vm1.snap2");
  assert.deepEqual(a!.backingStores(), []);
  assert.equal(b!.source!.file, "/restore/data");
  assert.equal(b!.source!.dev, "/restore/data");
  assert.equal(v!.type, "file");
  assert.deepEqual([v!.source!.file, v!.source!.pool, v!.source!.volume], ["/restore/vm1-data.qcow2", null, null]);
  assert.equal(e!.dataStore!.file, "/restore/ext.raw");
  // Untouched parts are still there.
  assert.match(d.toString(), /<my:owner>ops &amp; dev<\/my:owner>/);
  assert.equal(again.hasQemuCapability("incremental-backup"), true);
});

test("setSourceFile creates a missing <source>", () => {
  const d = DomainXml.parse("<domain><devices><disk type='file' device='cdrom'><driver name='qemu' type='raw'/><target dev='sda'/></disk></devices></domain>");
  d.disks()[0]!.setSourceFile("/iso/x.iso");
  const again = DomainXml.parse(d.toString());
  assert.equal(again.disks()[0]!.source!.file, "/iso/x.iso");
  assert.match(d.toString(), /<driver name="qemu" type="raw"\/><source file="\/iso\/x.iso"\/><target dev="sda"\/>/);
});

test("name setter creates <name> when missing", () => {
  const d = DomainXml.parse("<domain type='kvm'><memory>1</memory></domain>");
  d.name = "n";
  assert.equal(DomainXml.parse(d.toString()).name, "n");
});

test("malformed XML and wrong roots throw XmlError", () => {
  assert.throws(() => DomainXml.parse("<domain><name>x</domain>"), XmlError);
  assert.throws(() => DomainXml.parse(""), XmlError);
  assert.throws(() => DomainXml.parse("<domaincheckpoint/>"), /not a domain XML document/);
  assert.throws(() => parseXml("not xml", "vmconfig.xml"), /cannot parse vmconfig.xml/);
});
