import { test } from "node:test";
import assert from "node:assert/strict";
import {
  buildBackupXml,
  buildCheckpointXml,
  parseCheckpointXml,
  scratchFilePath,
} from "../../src/libvirt/backup-xml.js";
import { XmlError } from "../../src/libvirt/domain-xml.js";

test("backup job XML, local incremental: exactly as docs/behaviour.md", () => {
  const xml = buildBackupXml({
    server: { transport: "unix", socket: "/var/tmp/virtnbdbackup.12345" },
    disks: [{ name: "sda", scratchFile: "/var/tmp/backup.K3Z9Q.sda" }],
    incremental: "virtnbdbackup.1",
  });
  assert.equal(
    xml,
    [
      '<domainbackup mode="pull">',
      '  <server transport="unix" socket="/var/tmp/virtnbdbackup.12345"/>',
      "  <disks>",
      '    <disk name="sda">',
      '      <scratch file="/var/tmp/backup.K3Z9Q.sda"/>',
      "    </disk>",
      "  </disks>",
      "  <incremental>virtnbdbackup.1</incremental>",
      "</domainbackup>",
    ].join("\n"),
  );
});

test("backup job XML, full with two disks: no <incremental>", () => {
  for (const incremental of [undefined, null, ""]) {
    const xml = buildBackupXml({
      server: { transport: "unix", socket: "/s" },
      disks: [
        { name: "vda", scratchFile: "/t/backup.AAAAA.vda" },
        { name: "vdb", scratchFile: "/t/backup.BBBBB.vdb" },
      ],
      incremental,
    });
    assert.equal(
      xml,
      '<domainbackup mode="pull">\n  <server transport="unix" socket="/s"/>\n  <disks>\n' +
        '    <disk name="vda">\n      <scratch file="/t/backup.AAAAA.vda"/>\n    </disk>\n' +
        '    <disk name="vdb">\n      <scratch file="/t/backup.BBBBB.vdb"/>\n    </disk>\n' +
        "  </disks>\n</domainbackup>",
    );
  }
});

test("backup job XML, remote server element", () => {
  const xml = buildBackupXml({
    server: { tls: true, name: "hv1.example", port: 10809 },
    disks: [{ name: "sda", scratchFile: "/x" }],
  });
  assert.equal(xml.split("\n")[1], '  <server tls="yes" name="hv1.example" port="10809"/>');
  const plain = buildBackupXml({ server: { tls: false, name: "::1", port: "10809" }, disks: [] });
  assert.equal(plain, '<domainbackup mode="pull">\n  <server tls="no" name="::1" port="10809"/>\n  <disks/>\n</domainbackup>');
});

test("attribute and text values are escaped", () => {
  const xml = buildBackupXml({
    server: { transport: "unix", socket: '/tmp/a"b&c<d>' },
    disks: [],
    incremental: "x&y<z",
  });
  assert.match(xml, /socket="\/tmp\/a&quot;b&amp;c&lt;d&gt;"/);
  assert.match(xml, /<incremental>x&amp;y&lt;z<\/incremental>/);
});

test("checkpoint XML with parent: exactly as docs/behaviour.md", () => {
  assert.equal(
    buildCheckpointXml({ name: "virtnbdbackup.2", parent: "virtnbdbackup.1", disks: ["sda"] }),
    [
      "<domaincheckpoint>",
      "  <description>Backup checkpoint</description>",
      "  <name>virtnbdbackup.2</name>",
      "  <parent>",
      "    <name>virtnbdbackup.1</name>",
      "  </parent>",
      "  <disks>",
      '    <disk name="sda"/>',
      "  </disks>",
      "</domaincheckpoint>",
    ].join("\n"),
  );
});

test("checkpoint XML without parent, several disks, none", () => {
  assert.equal(
    buildCheckpointXml({ name: "virtnbdbackup.0", parent: "", disks: ["vda", "vdb"] }),
    "<domaincheckpoint>\n  <description>Backup checkpoint</description>\n  <name>virtnbdbackup.0</name>\n" +
      '  <disks>\n    <disk name="vda"/>\n    <disk name="vdb"/>\n  </disks>\n</domaincheckpoint>',
  );
  assert.match(buildCheckpointXml({ name: "c", disks: [] }), /\n {2}<disks\/>\n<\/domaincheckpoint>$/);
});

test("scratch file path: backup.<5 of [A-Z0-9]>.<dev>", () => {
  const p = scratchFilePath("/var/tmp/", "sda");
  assert.match(p, /^\/var\/tmp\/backup\.[A-Z0-9]{5}\.sda$/);
  assert.equal(scratchFilePath("/s", "vdb", () => 0), "/s/backup.AAAAA.vdb");
  assert.equal(scratchFilePath("/s", "vdb", (n) => n - 1), "/s/backup.99999.vdb");
});

const LIBVIRT_CHECKPOINT = `<domaincheckpoint>
  <name>virtnbdbackup.1</name>
  <description>Backup checkpoint</description>
  <parent>
    <name>virtnbdbackup.0</name>
  </parent>
  <creationTime>1700000000</creationTime>
  <disks>
    <disk name='sda' checkpoint='bitmap' bitmap='virtnbdbackup.1' size='1048576'/>
    <disk name='sdb' checkpoint='no'/>
  </disks>
  <domain type='qemu'>
    <name>vm</name>
    <devices>
      <disk type='file' device='disk'><target dev='sda'/></disk>
    </devices>
  </domain>
</domaincheckpoint>`;

test("parses libvirt's checkpoint XML (SIZE flag output)", () => {
  assert.deepEqual(parseCheckpointXml(LIBVIRT_CHECKPOINT), {
    name: "virtnbdbackup.1",
    parent: "virtnbdbackup.0",
    description: "Backup checkpoint",
    creationTime: 1700000000,
    disks: [
      { name: "sda", checkpoint: "bitmap", bitmap: "virtnbdbackup.1", size: 1048576 },
      { name: "sdb", checkpoint: "no", bitmap: null, size: null },
    ],
  });
});

test("parses our own checkpoint XML back", () => {
  const info = parseCheckpointXml(buildCheckpointXml({ name: "virtnbdbackup.0", disks: ["sda"] }));
  assert.equal(info.name, "virtnbdbackup.0");
  assert.equal(info.parent, null);
  assert.equal(info.creationTime, null);
  assert.deepEqual(info.disks, [{ name: "sda", checkpoint: null, bitmap: null, size: null }]);
});

test("bad checkpoint XML throws XmlError", () => {
  assert.throws(() => parseCheckpointXml("<domaincheckpoint><disks/></domaincheckpoint>"), /no <name>/);
  assert.throws(() => parseCheckpointXml("<domain/>"), XmlError);
  assert.throws(() => parseCheckpointXml("<domaincheckpoint>"), XmlError);
});
