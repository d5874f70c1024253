/**
 * Our NBD client against a running domain's pull-mode backup export (libvirt backup job).
 * libvirt is driven with virsh only (setup/teardown); all reading goes through our client.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { chmod, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import {
  backupExtents,
  backupMetaContexts,
  collectBackupExtents,
  connect,
  dirtyBitmapContext,
  type NbdClient,
} from "../../src/nbd/index.js";
import { KiB, MiB, makeImage, run } from "../helpers/nbd-servers.js";
import { tempDir } from "../helpers/tmp.js";

const URI = process.env["VNBT_LIBVIRT_URI"] ?? "qemu:///system";
const virsh = (args: string[], allowFail = false): ReturnType<typeof run> => run("virsh", ["-c", URI, ...args], { allowFail, timeoutMs: 60000 });

const SIZE = 64 * MiB;

function domainXml(name: string, image: string): string {
  return `<domain type='qemu'>
  <name>${name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='${image}'/>
      <target dev='sda' bus='sata'/>
    </disk>
  </devices>
</domain>
`;
}

function backupXml(socket: string, scratch: string, incremental?: string): string {
  return `<domainbackup mode="pull">
  <server transport="unix" socket="${socket}"/>
  <disks>
    <disk name="sda">
      <scratch file="${scratch}"/>
    </disk>
  </disks>
${incremental ? `  <incremental>${incremental}</incremental>\n` : ""}</domainbackup>
`;
}

function checkpointXml(name: string): string {
  return `<domaincheckpoint>
  <description>Backup checkpoint</description>
  <name>${name}</name>
  <disks>
    <disk name="sda"/>
  </disks>
</domaincheckpoint>
`;
}

async function throwawayDomain(t: TestContext, dir: string, image: string): Promise<string> {
  const name = `vnbt-nbd-${randomBytes(4).toString("hex")}`;
  const xml = join(dir, "domain.xml");
  await writeFile(xml, domainXml(name, image));
  t.after(async () => {
    await virsh(["domjobabort", name], true);
    await virsh(["destroy", name], true);
    await virsh(["undefine", name, "--checkpoints-metadata"], true);
  });
  await virsh(["define", xml]);
  await virsh(["start", name]);
  return name;
}

/** qdev id of the domain's sda, for HMP qemu-io. */
async function qdevOf(name: string, image: string): Promise<string> {
  const r = await virsh(["qemu-monitor-command", name, '{"execute":"query-block"}']);
  const blocks = (JSON.parse(r.stdout) as { return: { qdev?: string; inserted?: { file?: string } }[] }).return;
  const b = blocks.find((x) => x.inserted?.file === image) ?? blocks.find((x) => x.qdev);
  assert.ok(b?.qdev, `no qdev for ${image}: ${r.stdout}`);
  return b.qdev;
}

async function readAll(c: NbdClient, exts: Iterable<{ offset: number; length: number; data: boolean }> | AsyncIterable<{ offset: number; length: number; data: boolean }>, expect: Buffer): Promise<number> {
  let bytes = 0;
  const buf = Buffer.alloc(4 * MiB);
  for await (const e of exts) {
    if (!e.data) {
      assert.ok(expect.subarray(e.offset, e.offset + e.length).every((b) => b === 0), `non-data extent at ${e.offset} holds data`);
      continue;
    }
    for (let pos = 0; pos < e.length; pos += buf.length) {
      const n = Math.min(buf.length, e.length - pos);
      const got = await c.read(e.offset + pos, n, buf);
      assert.ok(got.equals(expect.subarray(e.offset + pos, e.offset + pos + n)), `data at ${e.offset + pos}`);
    }
    bytes += e.length;
  }
  return bytes;
}

describe("nbd client vs a libvirt pull-mode backup export", () => {
  it("full and incremental backup jobs: extents and data through our client", async (t) => {
    const dir = await tempDir(t, "vnbt-nbd-virt-");
    await chmod(dir, 0o777);
    const image = await makeImage(t, {
      size: SIZE,
      dir,
      writes: [
        { pattern: 0x21, offset: 0, length: 2 * MiB },
        { pattern: 0x42, offset: 10 * MiB + 4 * KiB, length: 300 * KiB },
        { pattern: 0x63, offset: SIZE - MiB, length: MiB },
      ],
    });
    const rawPath = join(dir, "before.raw");
    await run("qemu-img", ["convert", "-f", "qcow2", "-O", "raw", image, rawPath]);
    const before = await readFile(rawPath);
    const name = await throwawayDomain(t, dir, image);

    // Full backup with a checkpoint.
    const sock1 = join(dir, "backup1.sock");
    await writeFile(join(dir, "b1.xml"), backupXml(sock1, join(dir, "scratch1.sda")));
    await writeFile(join(dir, "c1.xml"), checkpointXml("vnbt.1"));
    await virsh(["backup-begin", name, join(dir, "b1.xml"), join(dir, "c1.xml")]);
    const full = await connect({ uri: `nbd+unix:///sda?socket=${sock1}`, metaContexts: backupMetaContexts({}), intervalMs: 100, attempts: 50 });
    t.after(() => full.close());
    assert.equal(full.size, SIZE);
    assert.equal(full.info.readOnly, true);
    // The guest writes while the job runs; the export keeps the point-in-time view.
    const qdev = await qdevOf(name, image);
    // (qemu-io's output goes to the domain log; the incremental below checks the write.)
    await virsh(["qemu-monitor-command", name, "--hmp", `qemu-io -d ${qdev} "write -P 0x99 64k 64k"`]);
    const list = await collectBackupExtents(full);
    assert.equal(list.dataBytes + list.zeroBytes, SIZE);
    assert.ok(list.dataBytes >= 2 * MiB + 300 * KiB + MiB && list.dataBytes < 8 * MiB, `${list.dataBytes} data bytes`);
    assert.equal(await readAll(full, list, before), list.dataBytes);
    await full.disconnect();
    await virsh(["domjobabort", name]);

    // Incremental: the dirty bitmap exported as qemu:dirty-bitmap:backup-sda.
    const after = Buffer.from(before);
    after.fill(0x99, 64 * KiB, 128 * KiB);
    const sock2 = join(dir, "backup2.sock");
    await writeFile(join(dir, "b2.xml"), backupXml(sock2, join(dir, "scratch2.sda"), "vnbt.1"));
    await writeFile(join(dir, "c2.xml"), checkpointXml("vnbt.2"));
    await virsh(["backup-begin", name, join(dir, "b2.xml"), join(dir, "c2.xml")]);
    const dirtyContext = dirtyBitmapContext("backup-sda");
    const inc = await connect({ uri: `nbd+unix:///sda?socket=${sock2}`, metaContexts: backupMetaContexts({ dirtyContext }), intervalMs: 100, attempts: 50 });
    t.after(() => inc.close());
    assert.ok(inc.info.metaContexts.has(dirtyContext));
    const pieces = [];
    for await (const e of backupExtents(inc, { dirtyContext })) pieces.push(e);
    assert.ok(pieces.length > 0);
    assert.ok(pieces.every((e) => e.data && e.dirty));
    const covered = pieces.reduce((s, e) => s + e.length, 0);
    assert.ok(pieces.some((e) => e.offset <= 64 * KiB && e.offset + e.length >= 128 * KiB), JSON.stringify(pieces));
    assert.ok(covered < 2 * MiB, `${covered} dirty bytes`);
    await readAll(inc, pieces, after);
    const noSparse = await collectBackupExtents(inc, { dirtyContext, sparseDetection: false });
    assert.equal(noSparse.dataBytes + noSparse.zeroBytes, SIZE);
    await inc.disconnect();
    await virsh(["domjobabort", name]);
  });
});
