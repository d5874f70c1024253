/**
 * `virtnbdrestore --live` on real libvirtd + qemu (TCG): the restored domain starts on images
 * that read from the backup (an lz4 full + inc chain served by the command), the guest writes
 * into them while the block pulls copy the rest, and when every disk is complete the command
 * ends and the domain runs on its own images. Compared with a normal restore of the same
 * point plus exactly the guest's writes. A SIGKILLed command leaves the domain running; the
 * same command resumes. Two Ctrl-C stop it (the first only warns); the rerun completes.
 * The domains here run no OS (a real Linux guest: linux-guest helper, when it lands).
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { chmod, readFile } from "node:fs/promises";
import { checkEvents } from "../helpers/events.js";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { testDomain, MiB, TEST_DOMAIN_PREFIX, type TestDomain } from "../helpers/domains.js";
import { assertOk, imageHash, ourBackup, ourRestore, sh, startOurRestore, type RunningTool, type ToolResult } from "../helpers/our-tool.js";
import { tempDir } from "../helpers/tmp.js";
import { listBlockBitmaps } from "../../src/libvirt/block-bitmaps.js";
import { DomainXml } from "../../src/libvirt/domain-xml.js";
import type { Domain } from "../../src/libvirt/domain.js";
import { liveSocketPath } from "../../src/restore/live-server.js";

/** Resolves when `pattern` appears in the tool's stderr (rejects after `ms`, or when the tool ends first). */
function waitForLine(p: RunningTool, pattern: RegExp, ms = 60_000): Promise<void> {
  let seen = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${pattern} within ${ms} ms:\n${seen}`)), ms);
    void p.result.then((r) => {
      clearTimeout(timer);
      if (!pattern.test(seen)) reject(new Error(`the tool ended (exit ${r.exitCode}) before ${pattern}:\n${r.all}`));
    });
    p.child.stderr!.on("data", (c: Buffer) => {
      seen += c.toString();
      if (pattern.test(seen)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

async function copyDomain(d: TestDomain, name: string): Promise<Domain> {
  return d.connection.lookupDomain(name);
}

/** The copy's disk still reads from a backing (the pull has not completed). */
async function readsFromBackup(dom: Domain, target: string): Promise<boolean> {
  return (DomainXml.parse(await dom.xmlDesc(0)).disk(target)?.backingStores().length ?? 0) > 0;
}

/** A guest write on the running copy (HMP qemu-io on the disk's device). */
async function guestWrite(dom: Domain, target: string, offset: number, length: number, pattern: number): Promise<void> {
  const node = (await listBlockBitmaps(dom)).find((n) => n.target === target);
  assert.ok(node, `disk ${target} of the copy`);
  const reply = await dom.hmp(`qemu-io -d ${node.qdev} "write -P ${pattern} ${offset} ${length}"`);
  assert.doesNotMatch(reply, /error|failed/i, reply);
}

/** A normal restore of the set with the same guest writes applied offline: what the live image must equal. */
async function expectedHash(work: string, set: string, target: string, file: string, writes: [number, number, number][]): Promise<string> {
  const out = join(work, `expected-${Date.now()}`);
  assertOk(await ourRestore(["-i", set, "-o", out, "-n", "-d", target]), "normal restore");
  for (const [offset, length, pattern] of writes) await sh("qemu-io", ["-f", "qcow2", "-c", `write -P ${pattern} ${offset} ${length}`, join(out, file)]);
  return imageHash(join(out, file), "qcow2");
}

/** Through virsh: the test domain's own connection may be closed by its cleanup already. */
async function removeCopy(name: string): Promise<void> {
  await sh("virsh", ["-q", "destroy", name]).catch(() => undefined);
  await sh("virsh", ["-q", "undefine", name]).catch(() => undefined);
}

test("live restore: boots at once from an lz4 chain, guest writes land in the images, the copy completes; a killed run resumes; two Ctrl-C stop", async (t: TestContext) => {
  const d = await testDomain(t, { disks: [{ size: 64 * MiB }], start: true });
  await d.writeRandom("sda", 16 * MiB, 8 * MiB, 7);
  const work = await tempDir(t, "vnbt-live-");
  await chmod(work, 0o755); // qemu (libvirt-qemu) opens the images in it
  const set = join(work, "set");
  assertOk(await ourBackup(["-d", d.name, "-l", "full", "-z", "-o", set, "-n"]), "full");
  await d.writePattern("sda", 40 * MiB, 2 * MiB, 0x42);
  assertOk(await ourBackup(["-d", d.name, "-l", "inc", "-z", "-o", set, "-n"]), "inc");
  await d.destroy();
  const file = `${d.disks[0]!.path.split("/").pop()}`;
  const names: string[] = [];
  t.after(async () => {
    for (const n of names) await removeCopy(n);
  });
  const live = (out: string, name: string, extra: string[] = []) => startOurRestore(["-i", set, "-o", out, "--live", "-N", name, "-n", ...extra]);

  await t.test("boots before the copy, guest writes land in the image, ends when complete", async () => {
    const name = `${TEST_DOMAIN_PREFIX}live-a-${process.pid}`;
    names.push(name);
    const out = join(work, "a");
    const eventsFile = join(work, "a-events.jsonl");
    const p = live(out, name, ["--live-bandwidth", "4", "--json-file", eventsFile]);
    await waitForLine(p, /Copying disk \[sda\]/);
    const dom = await copyDomain(d, name);
    assert.ok(await dom.isActive(), "the domain runs before the copy is done");
    assert.ok(await readsFromBackup(dom, "sda"), "and still reads from the backup");
    const writes: [number, number, number][] = [[17 * MiB, MiB, 0x5a], [60 * MiB, 512 * 1024, 0x6b]];
    for (const [o, l, pat] of writes) await guestWrite(dom, "sda", o, l, pat);
    assert.ok(await readsFromBackup(dom, "sda"), "the writes went in while the copy ran");
    const r = assertOk(await p.result, "live restore");
    assert.match(r.stderr, /Disk \[sda\] is complete in \[.*\] \([\d.]+ s\): it no longer reads from the backup\./);
    assert.match(r.stderr, /Live restore complete/);
    const events = checkEvents(await readFile(eventsFile, "utf8"));
    assert.deepEqual(events.filter((e) => e.event === "disk-start" || e.event === "disk-done").map((e) => [e.event, e["disk"]]), [["disk-start", "sda"], ["disk-done", "sda"]]);
    assert.ok(events.some((e) => e.event === "progress"), "progress events while the copy runs");
    assert.equal(events.at(-1)!["exitCode"], 0);
    assert.ok(await dom.isActive(), "the domain kept running");
    assert.equal(await readsFromBackup(dom, "sda"), false);
    assert.equal(existsSync(liveSocketPath(out)), false, "the socket is gone");
    await dom.destroy();
    dom.free();
    const header = await sh("qemu-img", ["info", "--output", "json", join(out, file)]);
    assert.equal((JSON.parse(header) as Record<string, unknown>)["backing-filename"], undefined, "no backing left in the image");
    assert.equal(await imageHash(join(out, file), "qcow2"), await expectedHash(work, set, "sda", file, writes));
  });

  await t.test("SIGKILL mid-copy: the domain keeps running; the same command resumes and completes", async () => {
    const name = `${TEST_DOMAIN_PREFIX}live-b-${process.pid}`;
    names.push(name);
    const out = join(work, "b");
    const p = live(out, name, ["--live-bandwidth", "1"]);
    await waitForLine(p, /Copying disk \[sda\]/);
    await sleep(1500);
    p.child.kill("SIGKILL");
    await p.result;
    const dom = await copyDomain(d, name);
    assert.ok(await dom.isActive(), "the guest survives its server's death (reads of uncopied blocks wait)");
    await guestWrite(dom, "sda", 2 * MiB, MiB, 0x7c);
    const again = assertOk(await live(out, name).result, "rerun");
    assert.match(again.stderr, /Resuming the live restore of disk \[sda\]/);
    assert.match(again.stderr, /is running on the restored images: resuming the copy/);
    assert.match(again.stderr, /Disk \[sda\] reads from this run's server again\./);
    assert.match(again.stderr, /Live restore complete/);
    await dom.destroy();
    dom.free();
    assert.equal(await imageHash(join(out, file), "qcow2"), await expectedHash(work, set, "sda", file, [[2 * MiB, MiB, 0x7c]]));
  });

  await t.test("Ctrl-C: the first warns and goes on, the second stops (exit 1); the rerun completes", async () => {
    const name = `${TEST_DOMAIN_PREFIX}live-c-${process.pid}`;
    names.push(name);
    const out = join(work, "c");
    const p = live(out, name, ["--live-bandwidth", "1"]);
    await waitForLine(p, /Copying disk \[sda\]/);
    const warned = waitForLine(p, /WARNING .*The domain still reads from this process/);
    p.child.kill("SIGINT");
    await warned;
    assert.equal(p.child.exitCode, null, "still serving after the first Ctrl-C");
    p.child.kill("SIGINT");
    const r: ToolResult = await p.result;
    assert.equal(r.exitCode, 1, r.all);
    assert.match(r.stderr, /ERROR .*Live restore stopped before the copy completed: run the same command again to resume\./);
    assertOk(await live(out, name).result, "rerun after Ctrl-C");
    const dom = await copyDomain(d, name);
    await dom.destroy();
    dom.free();
    assert.equal(await imageHash(join(out, file), "qcow2"), await expectedHash(work, set, "sda", file, []));
  });

  await t.test("refused: an image that is not a live one, verify, --live-bandwidth alone", async () => {
    const out = join(work, "d");
    await sh("mkdir", ["-p", out]);
    await sh("qemu-img", ["create", "-f", "qcow2", join(out, file), "64M"]);
    const r = await ourRestore(["-i", set, "-o", out, "--live", "-N", `${TEST_DOMAIN_PREFIX}live-d-${process.pid}`, "-n"]);
    assert.equal(r.exitCode, 1);
    assert.match(r.stderr, /ERROR .*Target file already exists: \[.*\], won't overwrite\./);
    const verify = await ourRestore(["-i", set, "-o", "verify", "--live"]);
    assert.equal(verify.exitCode, 1);
    assert.match(verify.stderr, /ERROR .*Option --live restores a domain: it does not go with dump or verify\./);
    const alone = await ourRestore(["-i", set, "-o", join(work, "e"), "--live-bandwidth", "3"]);
    assert.equal(alone.exitCode, 1);
    assert.match(alone.stderr, /ERROR .*Option --live-bandwidth goes with --live\./);
  });
});

test("live restore of one disk (-d): the other disk is left out of the started domain, not pointed at the original's image", async (t: TestContext) => {
  const d = await testDomain(t, { disks: [{ size: 16 * MiB }, { size: 16 * MiB }], start: true });
  const work = await tempDir(t, "vnbt-live-");
  await chmod(work, 0o755);
  const set = join(work, "set");
  assertOk(await ourBackup(["-d", d.name, "-l", "full", "-o", set, "-n"]), "full");
  await d.destroy();
  const name = `${TEST_DOMAIN_PREFIX}live-d-${process.pid}`;
  t.after(() => removeCopy(name));
  const p = startOurRestore(["-i", set, "-o", join(work, "out"), "--live", "-N", name, "-n", "-d", "sda", "--live-bandwidth", "1"]);
  await waitForLine(p, /Copying disk \[sda\]/);
  const running = DomainXml.parse(await (await copyDomain(d, name)).xmlDesc(0));
  assert.deepEqual(running.disks().filter((x) => x.device === "disk").map((x) => x.target), ["sda"]);
  const r = assertOk(await p.result, "live restore of sda");
  assert.match(r.stderr, /WARNING .*Disk \[sdb\] is not restored here: it is left out of the live domain\./);
});
