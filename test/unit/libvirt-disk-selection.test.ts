import { test } from "node:test";
import assert from "node:assert/strict";
import { recordingLog } from "../helpers/recording-log.js";
import { DomainXml } from "../../src/libvirt/domain-xml.js";
import { selectDisks, type SelectedDisk, type SelectionOptions } from "../../src/libvirt/disk-selection.js";

const fakeLog = recordingLog;

const domain = (...disks: string[]): DomainXml =>
  DomainXml.parse(`<domain type='kvm'>
  <name>vm1</name>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    ${disks.join("\n    ")}
    <interface type='network'><source network='default'/></interface>
  </devices>
</domain>`);

const QCOW2 = `<disk type='file' device='disk'>
  <driver name='qemu' type='qcow2' discard='unmap'/>
  <source file='/var/lib/libvirt/images/vm1.snap1'/>
  <backingStore type='file'>
    <format type='qcow2'/>
    <source file='/var/lib/libvirt/images/vm1.qcow2'/>
    <backingStore type='file'>
      <format type='qcow2'/>
      <source file='/var/lib/libvirt/images/base.qcow2'/>
      <backingStore/>
    </backingStore>
  </backingStore>
  <target dev='vda' bus='virtio'/>
</disk>`;
const RAW_FILE = `<disk type='file' device='disk'>
  <driver name='qemu' type='raw'/>
  <source file='/var/lib/libvirt/images/data.img'/>
  <target dev='vdb' bus='virtio'/>
</disk>`;
const CDROM = `<disk type='file' device='cdrom'>
  <driver name='qemu' type='raw'/>
  <source file='/isos/debian.iso'/>
  <target dev='sda' bus='sata'/>
  <readonly/>
</disk>`;
const EMPTY_CDROM = `<disk type='file' device='cdrom'>
  <driver name='qemu' type='raw'/>
  <target dev='sdb' bus='sata'/>
</disk>`;
const FLOPPY = `<disk type='file' device='floppy'>
  <driver name='qemu' type='raw'/>
  <source file='/isos/boot.img'/>
  <target dev='fda' bus='fdc'/>
</disk>`;
const LUN = `<disk type='block' device='lun'>
  <driver name='qemu' type='raw'/>
  <source dev='/dev/sdc'/>
  <target dev='sdc' bus='scsi'/>
</disk>`;
const QCOW2_LUN = `<disk type='block' device='lun'>
  <driver name='qemu' type='qcow2'/>
  <source dev='/dev/sdd'/>
  <target dev='sdd' bus='scsi'/>
</disk>`;
const RAW_BLOCK = `<disk type='block' device='disk'>
  <driver name='qemu' type='raw'/>
  <source dev='/dev/vg0/data'/>
  <target dev='vdc' bus='virtio'/>
</disk>`;
const QCOW2_BLOCK = `<disk type='block' device='disk'>
  <driver name='qemu' type='qcow2' discard='ignore'/>
  <source dev='/dev/vg0/qcow'/>
  <target dev='vdd' bus='virtio'/>
</disk>`;
const NO_SOURCE = `<disk type='file' device='disk'>
  <driver name='qemu' type='qcow2'/>
  <target dev='vde' bus='virtio'/>
</disk>`;
const NETWORK = `<disk type='network' device='disk'>
  <driver name='qemu' type='qcow2'/>
  <source protocol='rbd' name='pool/image'><host name='mon1.example' port='6789'/></source>
  <target dev='vdf' bus='virtio'/>
</disk>`;
const VOLUME = `<disk type='volume' device='disk'>
  <driver name='qemu' type='qcow2'/>
  <source pool='default' volume='vm1-data.qcow2'/>
  <target dev='vdg' bus='virtio'/>
</disk>`;
const DIR_DISK = `<disk type='dir' device='disk'>
  <driver name='qemu' type='fat'/>
  <source dir='/srv/share'/>
  <target dev='vdh' bus='virtio'/>
</disk>`;
const NO_TARGET = `<disk type='file' device='disk'>
  <driver name='qemu' type='qcow2'/>
  <source file='/images/notarget.qcow2'/>
</disk>`;

const run = async (xml: DomainXml, o: SelectionOptions) => {
  const log = fakeLog();
  const disks = await selectDisks(xml, o, log);
  return { disks, targets: disks.map((d) => d.target), lines: log.lines };
};

const plain = (d: SelectedDisk) => {
  const { element, ...rest } = d;
  assert.equal(element.target, d.target, "element is the disk's own XML");
  return rest;
};

test("a qcow2 file disk is selected with path, file name, backing files and discard", async () => {
  const { disks, lines } = await run(domain(QCOW2), { raw: false });
  assert.deepEqual(lines, []);
  assert.equal(disks.length, 1);
  assert.deepEqual(plain(disks[0]!), {
    target: "vda",
    format: "qcow2",
    device: "disk",
    path: "/var/lib/libvirt/images/vm1.snap1",
    fileName: "vm1.snap1",
    backingFiles: ["/var/lib/libvirt/images/vm1.qcow2", "/var/lib/libvirt/images/base.qcow2"],
    discard: "unmap",
    sourceType: "file",
    raw: false,
  });
});

test("without --raw: raw file, raw block and LUN disks are skipped with the original's warnings", async () => {
  const { targets, lines } = await run(domain(QCOW2, RAW_FILE, RAW_BLOCK, LUN, QCOW2_LUN), { raw: false });
  assert.deepEqual(targets, ["vda"]);
  assert.deepEqual(lines, [
    "WARNING Raw disk [vdb] excluded by default, use option --raw to include.",
    "WARNING Raw disk [vdc] excluded by default, use option --raw to include.",
    "WARNING Raw disk [sdc] excluded by default, use option --raw to include.",
    "WARNING Skipping direct attached lun [sdd], use option --raw to include.",
  ]);
});

test("with --raw: raw file, raw block and LUN disks are selected as raw", async () => {
  const { disks, lines } = await run(domain(QCOW2, RAW_FILE, RAW_BLOCK, LUN, QCOW2_LUN), { raw: true });
  assert.deepEqual(lines, []);
  assert.deepEqual(
    disks.map((d) => [d.target, d.format, d.device, d.sourceType, d.path, d.fileName, d.raw]),
    [
      ["vda", "qcow2", "disk", "file", "/var/lib/libvirt/images/vm1.snap1", "vm1.snap1", false],
      ["vdb", "raw", "disk", "file", "/var/lib/libvirt/images/data.img", "data.img", true],
      ["vdc", "raw", "disk", "block", "/dev/vg0/data", "data", true],
      ["sdc", "raw", "lun", "block", "/dev/sdc", "sdc", true],
      ["sdd", "qcow2", "lun", "block", "/dev/sdd", "sdd", true],
    ],
  );
});

test("a qcow2-formatted block device is treated like a file, also without --raw", async () => {
  const { disks, lines } = await run(domain(QCOW2_BLOCK), { raw: false });
  assert.deepEqual(lines, []);
  assert.deepEqual(plain(disks[0]!), {
    target: "vdd",
    format: "qcow2",
    device: "disk",
    path: "/dev/vg0/qcow",
    fileName: "qcow",
    backingFiles: [],
    discard: "ignore",
    sourceType: "block",
    raw: false,
  });
});

test("cdrom and floppy devices are skipped with an info line, with or without --raw, with or without a source", async () => {
  for (const raw of [false, true]) {
    const { targets, lines } = await run(domain(CDROM, QCOW2, EMPTY_CDROM, FLOPPY), { raw });
    assert.deepEqual(targets, ["vda"]);
    assert.deepEqual(lines, [
      "INFO Skipping attached [cdrom] device: [sda].",
      "INFO Skipping attached [cdrom] device: [sdb].",
      "INFO Skipping attached [floppy] device: [fda].",
    ]);
  }
});

test("disks without a source, network disks and unknown types are errors and skipped", async () => {
  for (const raw of [false, true]) {
    const { targets, lines } = await run(domain(NO_SOURCE, NETWORK, DIR_DISK, QCOW2), { raw });
    assert.deepEqual(targets, ["vda"]);
    assert.deepEqual(lines, [
      "ERROR Disk [vde] has no source path",
      "ERROR Unsupported network disk type for disk [vdf]",
      "ERROR Unable to detect disk type [dir] for disk [vdh]",
    ]);
  }
});

test("a disk without a target is left out silently; a disk without @type is a file disk", async () => {
  const noType = `<disk device='disk'><driver name='qemu' type='qcow2'/><source file='/images/t.qcow2'/><target dev='vdi'/></disk>`;
  const { disks, lines } = await run(domain(NO_TARGET, noType), { raw: false });
  assert.deepEqual(lines, []);
  assert.deepEqual(
    disks.map((d) => [d.target, d.sourceType, d.path]),
    [["vdi", "file", "/images/t.qcow2"]],
  );
});

test("a disk without <driver> counts as raw", async () => {
  const noDriver = `<disk type='file' device='disk'><source file='/images/plain.img'/><target dev='vdj'/></disk>`;
  const skipped = await run(domain(noDriver), { raw: false });
  assert.deepEqual(skipped.targets, []);
  assert.deepEqual(skipped.lines, ["WARNING Raw disk [vdj] excluded by default, use option --raw to include."]);
  const taken = await run(domain(noDriver), { raw: true });
  assert.deepEqual(
    taken.disks.map((d) => [d.target, d.format, d.raw]),
    [["vdj", "raw", true]],
  );
});

test("volume disks: the path comes from resolveVolume(pool, volume)", async () => {
  const calls: string[][] = [];
  const { disks, lines } = await run(domain(VOLUME), {
    raw: false,
    resolveVolume: async (pool, volume) => {
      calls.push([pool, volume]);
      return "/var/lib/libvirt/images/vm1-data.qcow2";
    },
  });
  assert.deepEqual(calls, [["default", "vm1-data.qcow2"]]);
  assert.deepEqual(lines, []);
  assert.deepEqual(
    disks.map((d) => [d.target, d.sourceType, d.path, d.fileName, d.format, d.raw]),
    [["vdg", "volume", "/var/lib/libvirt/images/vm1-data.qcow2", "vm1-data.qcow2", "qcow2", false]],
  );
});

test("volume disks: an error without a resolver or without pool/volume", async () => {
  const noResolver = await run(domain(VOLUME, QCOW2), { raw: false });
  assert.deepEqual(noResolver.targets, ["vda"]);
  assert.deepEqual(noResolver.lines, ["ERROR Unable to resolve volume of disk [vdg]"]);

  const noPool = `<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/><source volume='v.qcow2'/><target dev='vdk'/></disk>`;
  const calls: string[][] = [];
  const r = await run(domain(noPool), {
    raw: false,
    resolveVolume: async (pool, volume) => {
      calls.push([pool, volume]);
      return "/x";
    },
  });
  assert.deepEqual(calls, []);
  assert.deepEqual(r.targets, []);
  assert.deepEqual(r.lines, ["ERROR Unable to resolve volume of disk [vdk]"]);
});

test("a raw volume is resolved and then skipped without --raw", async () => {
  const rawVolume = VOLUME.replace("type='qcow2'", "type='raw'");
  const calls: string[] = [];
  const resolveVolume = async (_pool: string, volume: string) => {
    calls.push(volume);
    return `/pool/${volume}`;
  };
  const skipped = await run(domain(rawVolume), { raw: false, resolveVolume });
  assert.deepEqual(skipped.targets, []);
  assert.deepEqual(skipped.lines, ["WARNING Raw disk [vdg] excluded by default, use option --raw to include."]);
  const taken = await run(domain(rawVolume), { raw: true, resolveVolume });
  assert.deepEqual(
    taken.disks.map((d) => [d.target, d.path, d.raw]),
    [["vdg", "/pool/vm1-data.qcow2", true]],
  );
});

test("exclude: listed disks are skipped with a warning, before any other check", async () => {
  const { targets, lines } = await run(domain(QCOW2, RAW_FILE, CDROM, QCOW2_BLOCK, NETWORK), { raw: true, exclude: ["vdb", "sda", "vdf"] });
  assert.deepEqual(targets, ["vda", "vdd"]);
  assert.deepEqual(lines, [
    "WARNING Excluding disk [vdb] from backup as requested",
    "WARNING Excluding disk [sda] from backup as requested",
    "WARNING Excluding disk [vdf] from backup as requested",
  ]);
});

test("exclude matches whole target names only", async () => {
  const { targets, lines } = await run(domain(QCOW2, QCOW2_BLOCK), { raw: false, exclude: ["vd", "vdd2", ""] });
  assert.deepEqual(targets, ["vda", "vdd"]);
  assert.deepEqual(lines, []);
});

test("include: only that disk; every other disk gets an info line, even cdroms", async () => {
  const { targets, lines } = await run(domain(QCOW2, CDROM, QCOW2_BLOCK, NETWORK), { raw: false, include: "vdd" });
  assert.deepEqual(targets, ["vdd"]);
  assert.deepEqual(lines, [
    "INFO Skipping disk: [vda] as requested: does not match disk [vdd]",
    "INFO Skipping disk: [sda] as requested: does not match disk [vdd]",
    "INFO Skipping disk: [vdf] as requested: does not match disk [vdd]",
  ]);
});

test("include of a raw disk still needs --raw; exclude is checked before include", async () => {
  const withoutRaw = await run(domain(QCOW2, RAW_FILE), { raw: false, include: "vdb" });
  assert.deepEqual(withoutRaw.targets, []);
  assert.deepEqual(withoutRaw.lines, [
    "INFO Skipping disk: [vda] as requested: does not match disk [vdb]",
    "WARNING Raw disk [vdb] excluded by default, use option --raw to include.",
  ]);
  const both = await run(domain(QCOW2, RAW_FILE), { raw: true, include: "vdb", exclude: ["vdb"] });
  assert.deepEqual(both.targets, []);
  assert.deepEqual(both.lines, [
    "INFO Skipping disk: [vda] as requested: does not match disk [vdb]",
    "WARNING Excluding disk [vdb] from backup as requested",
  ]);
  const other = await run(domain(QCOW2, RAW_FILE, QCOW2_BLOCK), { raw: true, include: "vda", exclude: ["vdb"] });
  assert.deepEqual(other.targets, ["vda"]);
  assert.deepEqual(other.lines, [
    "WARNING Excluding disk [vdb] from backup as requested",
    "INFO Skipping disk: [vdd] as requested: does not match disk [vda]",
  ]);
});

test("include of an unknown disk selects nothing; null include and empty exclude select everything", async () => {
  const none = await run(domain(QCOW2, QCOW2_BLOCK), { raw: false, include: "vdz" });
  assert.deepEqual(none.targets, []);
  assert.equal(none.lines.length, 2);
  const all = await run(domain(QCOW2, QCOW2_BLOCK), { raw: false, include: null, exclude: [] });
  assert.deepEqual(all.targets, ["vda", "vdd"]);
});

test("a full mixed domain: document order is kept and every skip is logged once", async () => {
  const resolveVolume = async () => "/pool/vol.qcow2";
  const { targets, lines } = await run(
    domain(CDROM, QCOW2, RAW_FILE, NETWORK, VOLUME, LUN, QCOW2_BLOCK, NO_SOURCE, FLOPPY, NO_TARGET),
    { raw: false, resolveVolume, exclude: ["vdz"] },
  );
  assert.deepEqual(targets, ["vda", "vdg", "vdd"]);
  assert.deepEqual(lines, [
    "INFO Skipping attached [cdrom] device: [sda].",
    "WARNING Raw disk [vdb] excluded by default, use option --raw to include.",
    "ERROR Unsupported network disk type for disk [vdf]",
    "WARNING Raw disk [sdc] excluded by default, use option --raw to include.",
    "ERROR Disk [vde] has no source path",
    "INFO Skipping attached [floppy] device: [fda].",
  ]);
});
