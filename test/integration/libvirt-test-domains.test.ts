// The throwaway-domain helpers themselves: content from the spec, hashes offline and online,
// HMP writes showing up in the NBD-read hash, cleanup, and the stale-domain sweep.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Connection, DomainXml, isLibvirtError } from "../../src/libvirt/index.js";
import * as C from "../../src/libvirt/constants.js";
import {
  MiB,
  contentHash,
  createTestDomain,
  defaultContent,
  seededBytes,
  sweepStaleTestDomains,
  testDomain,
  withDomain,
} from "../helpers/domains.js";

const URI = process.env["VNBT_LIBVIRT_URI"] ?? "qemu:///system";

test("seeded bytes are deterministic and distinct per seed", () => {
  assert.deepEqual(seededBytes(1, 1000), seededBytes(1, 1000));
  assert.notDeepEqual(seededBytes(1, 1000), seededBytes(2, 1000));
  assert.deepEqual(seededBytes(7, 4099).subarray(0, 4096), seededBytes(7, 4096));
  const b = seededBytes(3, 1 << 16);
  assert.ok(new Set(b).size > 250, "looks random");
  assert.equal(
    contentHash(4, []),
    "df3f619804a92fdb4057192dc43dd748ea778adc52bc498ce80524c014b81119", // sha256 of 4 zero bytes
  );
});

test("disks hold the spec content: offline hash, online NBD hash, HMP writes, raw disks", async (t) => {
  const d = await testDomain(t, {
    disks: [{}, { size: 8 * MiB, format: "raw", content: [{ seed: 9, offset: MiB, length: 512 * 1024 }] }, { size: 4 * MiB, content: [] }],
    cdrom: true,
  });
  assert.match(d.name, new RegExp(`^vnbt-${process.pid}-[0-9a-f]{8}$`));
  assert.deepEqual(
    d.disks.map((x) => [x.target, x.format, x.size]),
    [
      ["sda", "qcow2", 64 * MiB],
      ["sdb", "raw", 8 * MiB],
      ["sdc", "qcow2", 4 * MiB],
    ],
  );
  assert.deepEqual(d.disks[0]!.content, defaultContent(0));
  const xml = DomainXml.parse(await d.domain.xmlDesc());
  assert.deepEqual(
    xml.disks().map((x) => [x.target, x.device, x.bus]),
    [
      ["sda", "disk", "sata"],
      ["sdb", "disk", "sata"],
      ["sdc", "disk", "sata"],
      ["sdd", "cdrom", "sata"],
    ],
  );
  const empty = contentHash(4 * MiB, []);
  const offline = await d.diskHashes();
  assert.deepEqual(offline, { sda: d.expectedHash("sda"), sdb: d.expectedHash("sdb"), sdc: empty });
  assert.notEqual(offline["sda"], contentHash(64 * MiB, []), "the default content is not all zeros");

  // Offline writes go to the image.
  await d.writePattern("sdc", 0, 4096, 0x01);
  assert.equal(await d.diskHash("sdc"), contentHash(4 * MiB, [{ pattern: 1, offset: 0, length: 4096 }]));

  await d.start();
  assert.deepEqual(await d.diskHashes(), {
    sda: d.expectedHash("sda"),
    sdb: d.expectedHash("sdb"),
    sdc: d.expectedHash("sdc"),
  });
  const before = await d.diskHash("sda");
  await d.writePattern("sda", 8 * MiB, MiB, 0x5a); // HMP qemu-io on the running disk
  const afterPattern = await d.diskHash("sda");
  assert.notEqual(afterPattern, before, "the HMP write shows up through NBD");
  assert.equal(afterPattern, d.expectedHash("sda"));
  await d.writeRandom("sdb", 0, 256 * 1024, 1234);
  await d.writeZeroes("sda", 0, 64 * 1024);
  assert.equal(await d.diskHash("sdb"), d.expectedHash("sdb"));
  assert.equal(await d.diskHash("sda"), d.expectedHash("sda"));
  const node = await d.blockNode("sdb");
  assert.equal(node.qdev, "sata0-0-1");
  assert.match(node.node, /^libvirt-\d+-(format|storage)$/);

  // What qemu wrote while running is in the image after shutdown.
  await d.destroy();
  assert.equal(await d.diskHash("sda"), d.expectedHash("sda"));
});

test("withDomain cleans up: domain undefined and files gone, also after a failure", async (t) => {
  let name = "";
  let dir = "";
  await withDomain(t, { disks: [{ size: 4 * MiB }], start: true }, async (d) => {
    name = d.name;
    dir = d.dir;
    assert.ok(existsSync(d.disks[0]!.path));
  });
  const c = await Connection.open(URI);
  t.after(() => c.close());
  await assert.rejects(c.lookupDomain(name), (e: unknown) => isLibvirtError(e, C.VIR_ERR_NO_DOMAIN));
  assert.equal(existsSync(dir), false);

  await assert.rejects(
    withDomain(t, { disks: [] }, async (d) => {
      name = d.name;
      // A paused domain and a failing body: cleanup must still work.
      await d.start(C.VIR_DOMAIN_START_PAUSED);
      throw new Error("test body failed");
    }),
    /test body failed/,
  );
  await assert.rejects(c.lookupDomain(name), (e: unknown) => isLibvirtError(e, C.VIR_ERR_NO_DOMAIN));
});

test("cleanup removes a domain with checkpoints after its connection was closed", async (t) => {
  const d = await createTestDomain({ disks: [{ size: 4 * MiB }], start: true });
  t.after(() => d.cleanup());
  await d.domain.checkpointCreateXML("<domaincheckpoint><name>cp</name></domaincheckpoint>");
  await d.connection.close();
  await d.cleanup();
  const c = await Connection.open(URI);
  t.after(() => c.close());
  await assert.rejects(c.lookupDomain(d.name), (e: unknown) => isLibvirtError(e, C.VIR_ERR_NO_DOMAIN));
  assert.equal(existsSync(d.dir), false);
});

test("sweep removes domains and temp dirs of dead test processes, not live ones", async (t) => {
  const live = await testDomain(t, { disks: [] });
  const c = await Connection.open(URI);
  t.after(() => c.close());
  // A domain and a temp dir as a crashed test process (a PID that cannot exist) leaves them.
  const deadPid = 4194305;
  const staleName = `vnbt-${deadPid}-deadbeef`;
  const xml = (await live.domain.xmlDesc(C.VIR_DOMAIN_XML_INACTIVE))
    .replace(`<name>${live.name}</name>`, `<name>${staleName}</name>`)
    .replace(/<uuid>.*<\/uuid>/, "");
  const stale = await c.defineXML(xml);
  t.after(() => stale.undefine().catch(() => undefined));
  const staleDir = join(process.env["VNBT_TMPDIR"] ?? tmpdir(), `vnbt-dom-${deadPid}-deadbeef-x`);
  await mkdir(staleDir, { recursive: true });

  const removed = await sweepStaleTestDomains({ connection: c });
  assert.ok(removed.includes(staleName), `removed: ${removed.join(", ")}`);
  assert.ok(!removed.includes(live.name));
  await assert.rejects(c.lookupDomain(staleName), (e: unknown) => isLibvirtError(e, C.VIR_ERR_NO_DOMAIN));
  assert.equal(await live.domain.isPersistent(), true);
  assert.equal(existsSync(staleDir), false);
  assert.equal(existsSync(live.dir), true);
});
