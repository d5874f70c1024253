// Domain calls against throwaway TCG domains: lifecycle, autostart, start flags, transient
// domains, guest-agent errors, block/job info and qemu monitor commands.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Connection, DomainXml, LibvirtError, isLibvirtError } from "../../src/libvirt/index.js";
import * as C from "../../src/libvirt/constants.js";
import { MiB, testDomain } from "../helpers/domains.js";

const URI = process.env["VNBT_LIBVIRT_URI"] ?? "qemu:///system";

function rejectsWith(p: Promise<unknown>, code: number, message?: RegExp): Promise<void> {
  return assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof LibvirtError, `expected a LibvirtError, got ${String(e)}`);
    assert.equal(e.code, code, `code ${e.code} (${e.codeName}): ${e.message}`);
    if (message) assert.match(e.message, message);
    return true;
  });
}

async function waitFor(cond: () => Promise<boolean>, what: string, ms = 10000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("lifecycle: define, xml, autostart, start, suspend/resume, destroy, undefine", async (t) => {
  const d = await testDomain(t, { disks: [{}, { size: 16 * MiB, format: "raw" }], cdrom: true });
  const dom = await d.connection.lookupDomain(d.name);
  assert.equal(dom.name, d.name);
  assert.match(dom.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  assert.equal((await d.connection.lookupDomainByUUID(dom.uuid)).name, d.name);

  assert.deepEqual(await dom.state(), { state: C.VIR_DOMAIN_SHUTOFF, reason: C.VIR_DOMAIN_SHUTOFF_UNKNOWN });
  assert.equal(await dom.isActive(), false);
  assert.equal(await dom.isPersistent(), true);

  const xml = DomainXml.parse(await dom.xmlDesc());
  assert.equal(xml.name, d.name);
  assert.equal(xml.type, "qemu");
  assert.deepEqual(
    xml.disks().map((x) => [x.target, x.device, x.bus, x.format, x.sourcePath]),
    [
      ["sda", "disk", "sata", "qcow2", d.disks[0]!.path],
      ["sdb", "disk", "sata", "raw", d.disks[1]!.path],
      ["sdc", "cdrom", "sata", "raw", null],
    ],
  );

  assert.equal(await dom.autostart(), false);
  await dom.setAutostart(true);
  assert.equal(await dom.autostart(), true);
  await dom.setAutostart(false);
  assert.equal(await dom.autostart(), false);

  await dom.create();
  assert.equal((await dom.state()).state, C.VIR_DOMAIN_RUNNING);
  assert.equal(await dom.isActive(), true);
  const live = await dom.xmlDesc();
  assert.match(live, /<alias name='sata0-0-0'\/>/);
  assert.doesNotMatch(await dom.xmlDesc(C.VIR_DOMAIN_XML_INACTIVE), /<alias /);
  await rejectsWith(dom.create(), C.VIR_ERR_OPERATION_INVALID, /domain is already running/);

  await dom.suspend();
  assert.deepEqual(await dom.state(), { state: C.VIR_DOMAIN_PAUSED, reason: C.VIR_DOMAIN_PAUSED_USER });
  await dom.resume();
  assert.equal((await dom.state()).state, C.VIR_DOMAIN_RUNNING);

  await dom.destroy();
  assert.equal((await dom.state()).state, C.VIR_DOMAIN_SHUTOFF);
  await rejectsWith(dom.destroy(), C.VIR_ERR_OPERATION_INVALID, /domain is not running/);

  await dom.undefine(C.VIR_DOMAIN_UNDEFINE_NVRAM | C.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA);
  await rejectsWith(d.connection.lookupDomain(d.name), C.VIR_ERR_NO_DOMAIN);
  dom.free();
});

test("start paused with autodestroy: the domain dies with its connection", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 16 * MiB }] });
  const c = await Connection.open(URI);
  const dom = await c.lookupDomain(d.name);
  await dom.create(C.VIR_DOMAIN_START_PAUSED | C.VIR_DOMAIN_START_AUTODESTROY);
  assert.deepEqual(await d.domain.state(), { state: C.VIR_DOMAIN_PAUSED, reason: C.VIR_DOMAIN_PAUSED_USER });
  dom.free();
  await c.close();
  await waitFor(async () => !(await d.domain.isActive()), "autodestroy");
  assert.equal(await d.domain.isPersistent(), true, "still defined");
});

test("define with flags, redefine, transient createXML", async (t) => {
  const d = await testDomain(t, { disks: [] });
  const xml = await d.domain.xmlDesc(C.VIR_DOMAIN_XML_INACTIVE);
  const again = await d.connection.defineXML(xml.replace("<vcpu", "<description>redefined</description>\n  <vcpu"), C.VIR_DOMAIN_DEFINE_VALIDATE);
  assert.equal(again.uuid, d.domain.uuid);
  assert.match(await d.domain.xmlDesc(), /<description>redefined<\/description>/);
  await rejectsWith(d.connection.defineXML("<domain type='qemu'><name>x</name></domain>"), C.VIR_ERR_XML_ERROR);

  const transientName = `${d.name}-t`;
  const transientXml = xml
    .replace(`<name>${d.name}</name>`, `<name>${transientName}</name>`)
    .replace(/<uuid>.*<\/uuid>/, "");
  const tr = await d.connection.createXML(transientXml, C.VIR_DOMAIN_START_PAUSED);
  try {
    assert.equal(tr.name, transientName);
    assert.equal(await tr.isPersistent(), false);
    assert.equal((await tr.state()).state, C.VIR_DOMAIN_PAUSED);
    assert.ok((await d.connection.listAllDomains(C.VIR_CONNECT_LIST_DOMAINS_TRANSIENT)).some((x) => x.name === transientName));
  } finally {
    await tr.destroy();
  }
  await rejectsWith(d.connection.lookupDomain(transientName), C.VIR_ERR_NO_DOMAIN);
});

test("guest agent calls without an agent give libvirt's clear errors", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 16 * MiB }], start: true });
  const noAgent = /argument unsupported: QEMU guest agent is not configured/;
  await rejectsWith(d.domain.fsFreeze(), C.VIR_ERR_ARGUMENT_UNSUPPORTED, noAgent);
  await rejectsWith(d.domain.fsFreeze(["/", "/boot"]), C.VIR_ERR_ARGUMENT_UNSUPPORTED, noAgent);
  await rejectsWith(d.domain.fsThaw(), C.VIR_ERR_ARGUMENT_UNSUPPORTED, noAgent);
  await rejectsWith(d.domain.guestInfo(), C.VIR_ERR_ARGUMENT_UNSUPPORTED, noAgent);
  await rejectsWith(
    d.domain.qemuAgentCommand('{"execute":"guest-ping"}', 5),
    C.VIR_ERR_ARGUMENT_UNSUPPORTED,
    noAgent,
  );

  // A configured channel with nobody answering inside the guest.
  const withChannel = await testDomain(t, { disks: [], guestAgentChannel: true, start: true });
  await rejectsWith(withChannel.domain.fsFreeze(), C.VIR_ERR_AGENT_UNRESPONSIVE, /QEMU guest agent is not connected/);
  await rejectsWith(withChannel.domain.guestInfo(C.VIR_DOMAIN_GUEST_INFO_OS), C.VIR_ERR_AGENT_UNRESPONSIVE);
});

test("block info, block job info, job info and monitor commands", async (t) => {
  const d = await testDomain(t, { disks: [{}, { size: 16 * MiB }] });
  // Shut off: monitor commands need a running qemu.
  await rejectsWith(d.domain.hmp("info status"), C.VIR_ERR_OPERATION_INVALID, /domain is not running/);
  assert.equal((await d.domain.blockInfo("sda")).capacity, 64 * MiB);

  await d.start();
  const sda = await d.domain.blockInfo("sda");
  assert.equal(sda.capacity, 64 * MiB);
  assert.ok(sda.allocation > 0 && sda.physical > 0);
  assert.equal((await d.domain.blockInfo(d.disks[1]!.path)).capacity, 16 * MiB);
  await rejectsWith(d.domain.blockInfo("vdz"), C.VIR_ERR_INVALID_ARG, /invalid argument: invalid path vdz not assigned to domain/);

  assert.equal(await d.domain.blockJobInfo("sda"), null);
  const job = await d.domain.jobInfo();
  assert.equal(job.type, C.VIR_DOMAIN_JOB_NONE);
  assert.equal((await d.domain.jobStats()).type, C.VIR_DOMAIN_JOB_NONE);
  await rejectsWith(d.domain.abortJob(), C.VIR_ERR_OPERATION_INVALID, /no job is active/);

  const status = JSON.parse(await d.domain.qemuMonitorCommand('{"execute":"query-status"}')) as {
    return: { status: string };
  };
  assert.equal(status.return.status, "running");
  assert.match(await d.domain.hmp("info status"), /VM status: running/);
  assert.match(await d.domain.hmp("info block"), /Attached to:\s+sata0-0-1/);
  await assert.rejects(d.domain.qemuMonitorCommand("not json"), (e: unknown) => isLibvirtError(e));
});
