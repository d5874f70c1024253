import assert from "node:assert/strict";
import { test } from "node:test";
import { diskAliases, diskBlockNodes, listBlockBitmaps, removeBlockBitmap, type QueryBlockEntry } from "../../src/libvirt/block-bitmaps.js";
import { QmpError } from "../../src/libvirt/qmp.js";
import { imageBitmapsFromInfo } from "../../src/qemu/img-bitmaps.js";

const LIVE_XML = `<domain type='qemu' id='1'><name>vm</name><devices>
  <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/i/sda.qcow2' index='2'/>
    <target dev='sda' bus='sata'/><alias name='sata0-0-0'/></disk>
  <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/i/vdb.qcow2' index='3'/>
    <target dev='vdb' bus='virtio'/><alias name='virtio-disk1'/></disk>
  <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><target dev='sdb' bus='sata'/><alias name='sata0-0-1'/></disk>
</devices></domain>`;

// query-block as qemu 7.2 answers under libvirt 9.0 (-blockdev): no device name, qdev = alias or QOM path.
const QUERY_BLOCK: QueryBlockEntry[] = [
  {
    qdev: "sata0-0-0",
    inserted: {
      "node-name": "libvirt-2-format",
      "dirty-bitmaps": [
        { name: "virtnbdbackup.0", recording: true, persistent: true, busy: false, granularity: 65536, count: 0 },
        { name: "virtnbdbackup.1", recording: false, persistent: true, busy: false, granularity: 65536, count: 0, inconsistent: true },
        { recording: true, persistent: false, busy: true, granularity: 65536, count: 4096 },
      ],
    },
  },
  { qdev: "/machine/peripheral/virtio-disk1/virtio-backend", inserted: { "node-name": "libvirt-3-format" } },
  { qdev: "sata0-0-1" },
];

test("diskBlockNodes joins query-block with the disk aliases (sata id, virtio QOM path, empty cdrom left out)", () => {
  const nodes = diskBlockNodes(QUERY_BLOCK, diskAliases(LIVE_XML));
  assert.deepEqual(nodes, [
    {
      target: "sda",
      node: "libvirt-2-format",
      qdev: "sata0-0-0",
      bitmaps: [
        { name: "virtnbdbackup.0", granularity: 65536, recording: true, busy: false, persistent: true, inconsistent: false, count: 0 },
        { name: "virtnbdbackup.1", granularity: 65536, recording: false, busy: false, persistent: true, inconsistent: true, count: 0 },
      ],
    },
    { target: "vdb", node: "libvirt-3-format", qdev: "/machine/peripheral/virtio-disk1/virtio-backend", bitmaps: [] },
  ]);
});

test("a virtio alias does not match a longer alias with the same start", () => {
  const nodes = diskBlockNodes([{ qdev: "/machine/peripheral/virtio-disk10/virtio-backend", inserted: { "node-name": "n10" } }], [
    { target: "vdb", alias: "virtio-disk1" },
  ]);
  assert.deepEqual(nodes, []);
});

function fakeDomain(replies: Record<string, string>) {
  const sent: unknown[] = [];
  return {
    sent,
    name: "vm",
    xmlDesc: async () => LIVE_XML,
    qemuMonitorCommand: async (cmd: string) => {
      const parsed = JSON.parse(cmd) as { execute: string };
      sent.push(parsed);
      return replies[parsed.execute] ?? "{}";
    },
  };
}

test("listBlockBitmaps asks query-block; removeBlockBitmap sends node and name and throws qemu's error", async () => {
  const dom = fakeDomain({
    "query-block": JSON.stringify({ return: QUERY_BLOCK, id: "libvirt-1" }),
    "block-dirty-bitmap-remove": JSON.stringify({ id: "libvirt-2", error: { class: "GenericError", desc: "Dirty bitmap 'x' not found" } }),
  });
  const nodes = await listBlockBitmaps(dom);
  assert.equal(nodes.length, 2);
  await assert.rejects(removeBlockBitmap(dom, "libvirt-2-format", "x"), (e: unknown) => {
    assert.ok(e instanceof QmpError);
    assert.equal(e.errorClass, "GenericError");
    assert.equal(e.message, "QMP block-dirty-bitmap-remove on domain vm failed: Dirty bitmap 'x' not found");
    return true;
  });
  assert.deepEqual(dom.sent[1], { execute: "block-dirty-bitmap-remove", arguments: { node: "libvirt-2-format", name: "x" } });
});

test("imageBitmapsFromInfo reads qemu-img info's bitmaps and their flags", () => {
  const info = {
    "virtual-size": 16777216,
    format: "qcow2",
    "format-specific": {
      type: "qcow2",
      data: {
        compat: "1.1",
        bitmaps: [
          { flags: ["in-use", "auto"], name: "virtnbdbackup.0", granularity: 65536 },
          { flags: [], name: "disabled", granularity: 131072 },
        ],
      },
    },
  };
  assert.deepEqual(imageBitmapsFromInfo(JSON.stringify(info)), [
    { name: "virtnbdbackup.0", granularity: 65536, recording: true, inUse: true },
    { name: "disabled", granularity: 131072, recording: false, inUse: false },
  ]);
  assert.deepEqual(imageBitmapsFromInfo(JSON.stringify({ format: "raw", "virtual-size": 1 })), []);
});
