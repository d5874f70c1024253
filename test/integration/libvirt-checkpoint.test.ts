// Checkpoints on a running TCG domain: create, list, lookup, XML with sizes, parent, delete
// (metadata only, with children), redefine with validation, and the errors for missing ones.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { LibvirtError, buildCheckpointXml, parseCheckpointXml } from "../../src/libvirt/index.js";
import * as C from "../../src/libvirt/constants.js";
import { MiB, testDomain } from "../helpers/domains.js";

const execFileP = promisify(execFile);
const REDEFINE = C.VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE | C.VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE_VALIDATE;

function rejectsWith(p: Promise<unknown>, code: number, message?: RegExp): Promise<void> {
  return assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof LibvirtError, `expected a LibvirtError, got ${String(e)}`);
    assert.equal(e.code, code, `code ${e.code} (${e.codeName}): ${e.message}`);
    if (message) assert.match(e.message, message);
    return true;
  });
}

async function bitmaps(path: string): Promise<string[]> {
  const { stdout } = await execFileP("qemu-img", ["info", "--force-share", "--output=json", path]);
  const info = JSON.parse(stdout) as { "format-specific"?: { data?: { bitmaps?: { name: string }[] } } };
  return (info["format-specific"]?.data?.bitmaps ?? []).map((b) => b.name).sort();
}

test("create, list, lookup, size, parent, delete and redefine checkpoints", async (t) => {
  const d = await testDomain(t, { disks: [{}, { size: 16 * MiB }], start: true });
  const dom = d.domain;
  assert.deepEqual(await dom.listAllCheckpoints(), []);
  await rejectsWith(dom.checkpointLookupByName("virtnbdbackup.0"), C.VIR_ERR_NO_DOMAIN_CHECKPOINT, /no domain checkpoint with matching name 'virtnbdbackup.0'/);

  const cp0 = await dom.checkpointCreateXML(buildCheckpointXml({ name: "virtnbdbackup.0", disks: ["sda", "sdb"] }));
  assert.equal(cp0.name, "virtnbdbackup.0");
  assert.equal(cp0.domain, dom);
  await rejectsWith(cp0.parent(), C.VIR_ERR_NO_DOMAIN_CHECKPOINT, /does not have a parent/);

  // Only sda changes after cp0.
  await d.writePattern("sda", 8 * MiB, 2 * MiB, 0x5a);
  const sized = parseCheckpointXml(await cp0.xmlDesc(C.VIR_DOMAIN_CHECKPOINT_XML_SIZE));
  assert.equal(sized.name, "virtnbdbackup.0");
  assert.equal(sized.parent, null);
  assert.equal(sized.description, "Backup checkpoint");
  assert.ok(sized.creationTime! > 1_600_000_000);
  const sizes = Object.fromEntries(sized.disks.map((x) => [x.name, x.size]));
  assert.ok(sizes["sda"]! >= 2 * MiB, `sda size ${sizes["sda"]}`);
  assert.equal(sizes["sdb"], 0);
  assert.deepEqual(
    sized.disks.map((x) => [x.name, x.checkpoint, x.bitmap]),
    [
      ["sda", "bitmap", "virtnbdbackup.0"],
      ["sdb", "bitmap", "virtnbdbackup.0"],
    ],
  );
  const noDomain = await cp0.xmlDesc(C.VIR_DOMAIN_CHECKPOINT_XML_NO_DOMAIN);
  assert.doesNotMatch(noDomain, /<domain /);
  assert.match(await cp0.xmlDesc(), /<domain type='qemu'>/);

  const cp1 = await dom.checkpointCreateXML(
    buildCheckpointXml({ name: "virtnbdbackup.1", parent: "virtnbdbackup.0", disks: ["sda"] }),
  );
  assert.equal((await cp1.parent()).name, "virtnbdbackup.0");
  assert.equal(parseCheckpointXml(await cp1.xmlDesc()).parent, "virtnbdbackup.0");
  assert.deepEqual((await dom.listAllCheckpoints()).map((c) => c.name).sort(), ["virtnbdbackup.0", "virtnbdbackup.1"]);
  assert.deepEqual(
    (await dom.listAllCheckpoints(C.VIR_DOMAIN_CHECKPOINT_LIST_LEAVES)).map((c) => c.name),
    ["virtnbdbackup.1"],
  );
  assert.equal((await dom.checkpointLookupByName("virtnbdbackup.1")).name, "virtnbdbackup.1");

  // Redefine after a metadata-only delete: the bitmap is still in the image, validation passes.
  const cp1Xml = await cp1.xmlDesc();
  await cp1.delete(C.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY);
  await rejectsWith(dom.checkpointLookupByName("virtnbdbackup.1"), C.VIR_ERR_NO_DOMAIN_CHECKPOINT);
  const redefined = await dom.checkpointCreateXML(cp1Xml, REDEFINE);
  assert.equal(redefined.name, "virtnbdbackup.1");
  assert.equal((await redefined.parent()).name, "virtnbdbackup.0");
  // Redefining from its own current XML is the original's "validate" step.
  await dom.checkpointCreateXML(await redefined.xmlDesc(), REDEFINE);

  // A real delete removes the bitmap; redefining that XML with validation then fails.
  await redefined.delete();
  await assert.rejects(dom.checkpointCreateXML(cp1Xml, REDEFINE), (e: unknown) => {
    assert.ok(e instanceof LibvirtError);
    assert.equal(e.code, C.VIR_ERR_CHECKPOINT_INCONSISTENT, `${e.codeName}: ${e.message}`);
    assert.match(e.message, /virtnbdbackup.1/);
    return true;
  });

  // Children, and all descendants in one call.
  await dom.checkpointCreateXML(buildCheckpointXml({ name: "virtnbdbackup.1", parent: "virtnbdbackup.0", disks: ["sda"] }));
  await dom.checkpointCreateXML(buildCheckpointXml({ name: "virtnbdbackup.2", parent: "virtnbdbackup.1", disks: ["sda"] }));
  const root = await dom.checkpointLookupByName("virtnbdbackup.0");
  assert.deepEqual((await root.listAllChildren()).map((c) => c.name), ["virtnbdbackup.1"]);
  assert.deepEqual((await root.listAllChildren(C.VIR_DOMAIN_CHECKPOINT_LIST_DESCENDANTS)).map((c) => c.name).sort(), ["virtnbdbackup.1", "virtnbdbackup.2"]);
  assert.deepEqual(await (await dom.checkpointLookupByName("virtnbdbackup.2")).listAllChildren(C.VIR_DOMAIN_CHECKPOINT_LIST_DESCENDANTS), []);

  // Delete with children.
  await (await dom.checkpointLookupByName("virtnbdbackup.0")).delete(C.VIR_DOMAIN_CHECKPOINT_DELETE_CHILDREN);
  assert.deepEqual(await dom.listAllCheckpoints(), []);
  cp0.free();
  cp1.free();
});

test("checkpoints of a shut-off domain; undefine needs CHECKPOINTS_METADATA", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 16 * MiB }], start: true });
  const cp = await d.domain.checkpointCreateXML(buildCheckpointXml({ name: "virtnbdbackup.0", disks: ["sda"] }));
  await d.destroy();
  assert.deepEqual(await bitmaps(d.disks[0]!.path), ["virtnbdbackup.0"]);
  assert.equal((await d.domain.listAllCheckpoints()).length, 1);
  assert.equal(parseCheckpointXml(await cp.xmlDesc()).name, "virtnbdbackup.0");
  await rejectsWith(d.domain.undefine(0), C.VIR_ERR_OPERATION_INVALID, /checkpoint/);
  await d.domain.undefine(C.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA);
  assert.equal(await d.domain.isPersistent().catch(() => false), false);
});
