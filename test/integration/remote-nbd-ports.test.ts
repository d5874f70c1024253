/**
 * `-P N-M` / `auto` on a "remote" hypervisor (this machine through a private sshd, as in
 * remote-backup.test.ts): the first port of the range is held by a listening socket of the test
 * (another service on the hypervisor), so libvirt's job start and qemu-nbd's bind fail there
 * with "Address already in use" and the runs move on to the next port, saying so. Two online
 * jobs at once with the same range get distinct ports (one kept up with `-s` while the other
 * runs, so they overlap whatever the machine's speed; a race for the next port is settled by the
 * same retry); an offline copy of two disks and a remote restore do the same with
 * qemu-nbd; a single `-P N` that is taken still fails as it did. Every set is restored bit-exact.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { join } from "node:path";
import * as C from "../../src/libvirt/constants.js";
import { testDomain, MiB, type TestDomain } from "../helpers/domains.js";
import { assertOk, captureTruth, imageHash, logLines, ourBackup, ourRestore, startOurBackup, type ToolResult } from "../helpers/our-tool.js";
import { freePorts, remoteLeftovers, startRemoteHypervisor, type RemoteHypervisor } from "../helpers/remote.js";
import { tempDir } from "../helpers/tmp.js";

/** A listening socket on every address of `port`: the port is in use for anyone binding it. */
async function holdPort(t: { after(fn: () => Promise<void>): void }, port: number): Promise<void> {
  const server = net.createServer((s) => s.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "0.0.0.0", () => resolve());
  });
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
}

/** The port of `Remote NBD Endpoint host: [<host>:<port>]`. */
function endpointPort(r: ToolResult): number {
  const m = /Remote NBD Endpoint host: \[[^\]]*:(\d+)\]/.exec(r.stderr);
  assert.ok(m, `no endpoint line:\n${r.stderr}`);
  return Number(m[1]);
}

async function restoredEqual(set: string, out: string, d: TestDomain, truth: Record<string, string>, extra: string[] = [], env?: NodeJS.ProcessEnv): Promise<ToolResult> {
  const r = assertOk(await ourRestore([...extra, "-n", "-i", set, "-o", out], { env }), `restore of ${set}`);
  for (const disk of d.disks) assert.equal(await imageHash(join(out, `${disk.target}.qcow2`), "qcow2"), truth[disk.target], `${out}: ${disk.target}`);
  return r;
}

test("online: the range's first port is taken, two backups at once with one range get distinct free ports; a single taken -P fails as before", async (t) => {
  const hv = await startRemoteHypervisor(t);
  if (!hv) return t.skip("sshd not available (or not root)");
  const [a, b] = await Promise.all([testDomain(t, { disks: [{ size: 16 * MiB }], start: true }), testDomain(t, { disks: [{ size: 16 * MiB }], start: true })]);
  const work = await tempDir(t, "vnbt-ports-");
  const base = await freePorts(4);
  await holdPort(t, base);
  const range = `${base}-${base + 3}`;
  const run = (d: TestDomain, extra: string[] = []) =>
    startOurBackup([...hv.args, "-n", "-d", d.name, "-l", "full", "-o", join(work, d.name), "-P", range, ...extra], { env: hv.env }).result;
  // Overlap for certain: a's job stays up (-s) on its port while b starts; then a's job is ended (-k) and a backed up.
  const started = assertOk(await run(a!, ["-s"]), "job of a started (-s)");
  const pa = endpointPort(started);
  const rb = assertOk(await run(b!), "backup b while a's job holds its port");
  const pb = endpointPort(rb);
  assert.notEqual(pa, pb, "two jobs at once, two ports");
  assertOk(await ourBackup([...hv.args, "-n", "-d", a!.name, "-k", "-o", join(work, "kill")], { env: hv.env }), "job of a ended (-k)");
  assertOk(await run(a!, ["-o", join(work, `${a!.name}-2`)]), "backup a");
  for (const [r, p] of [[started, pa], [rb, pb]] as const) {
    assert.ok(p > base && p <= base + 3, `port ${p} in ${range}, not the taken ${base}`);
    assert.match(r.stderr, new RegExp(`INFO .*NBD port \\[${base}\\] is in use on \\[[^\\]]+\\], trying the next port of \\[${range}\\]\\.`));
    assert.match(r.stderr, new RegExp(`INFO .*Using NBD port \\[${p}\\] of \\[${range}\\] on \\[[^\\]]+\\]\\.`));
    assert.deepEqual(logLines(r, "ERROR"), []);
  }
  assert.match(rb.stderr, new RegExp(`Waiting until NBD server at \\[nbd://[^/]+:${pb}/sda\\] is up\\.`));
  assert.match(rb.stderr, new RegExp(`NBD port \\[${pa}\\] is in use`), "b moved past a's port too");
  for (const [d, set] of [[a!, join(work, `${a!.name}-2`)], [b!, join(work, b!.name)]] as const) {
    assert.equal((await d.domain.jobInfo()).type, C.VIR_DOMAIN_JOB_NONE, "no libvirt job left");
    await restoredEqual(set, join(work, `${d.name}-restored`), d, await captureTruth(d));
  }

  // -P N means exactly N: taken → the job start fails with libvirt's message, nothing else tried.
  const single = await ourBackup([...hv.args, "-n", "-d", a!.name, "-l", "copy", "-o", join(work, "single"), "-P", String(base)], { env: hv.env });
  assert.equal(single.exitCode, 1, single.all);
  assert.match(single.stderr, /ERROR .*Failed to start backup: \[.*Address already in use\]/);
  assert.doesNotMatch(single.stderr, /trying the next port/);
  assert.equal((await a!.domain.jobInfo()).type, C.VIR_DOMAIN_JOB_NONE, "no libvirt job left");
  assert.deepEqual(await remoteLeftovers(hv, [a!.dir, b!.dir]), []);
});

test("offline copy of two disks and a remote restore: qemu-nbd moves past the taken port, never two disks on one port at once", async (t) => {
  const hv = await startRemoteHypervisor(t);
  if (!hv) return t.skip("sshd not available (or not root)");
  const d = await testDomain(t, { disks: [{ size: 16 * MiB }, { size: 8 * MiB }] });
  const work = await tempDir(t, "vnbt-ports-offline-");
  const base = await freePorts(4);
  await holdPort(t, base);
  const range = `${base}-${base + 3}`;
  const set = join(work, "set");
  const r = await remoteRun(hv, ["-d", d.name, "-l", "copy", "-o", set, "-P", range, "-w", "2"], "offline copy");
  const ports = [...r.stderr.matchAll(/\[(sd[ab])\].*Offline backup, starting remote NBD server, socket: \[.*\], port: \[(\d+)\]/g)].map((m) => [m[1]!, Number(m[2])] as const);
  const used = new Map<string, number>();
  for (const [disk, port] of ports) used.set(disk, port); // the last start of each disk is the one that served
  assert.deepEqual([...used.keys()].sort(), ["sda", "sdb"]);
  // Two servers never listen on one port at once. The same port for both is a port the first
  // disk released when its server ended (the pool hands the lowest free port back): then the
  // other disk's serving start comes after every line of the first disk.
  if (used.get("sda") === used.get("sdb")) {
    const lines = r.stderr.split("\n");
    const servingStart = (disk: string) => lines.findLastIndex((l) => l.includes(`[${disk}]`) && /starting remote NBD server/.test(l));
    const lastLine = (disk: string) => lines.findLastIndex((l) => l.includes(`[${disk}]`));
    const [first, second] = servingStart("sda") < servingStart("sdb") ? ["sda", "sdb"] : ["sdb", "sda"];
    assert.ok(servingStart(second) > lastLine(first), `port ${used.get("sda")} served [${first}] and [${second}] at once:\n${r.stderr}`);
  }
  for (const p of used.values()) assert.ok(p > base && p <= base + 3, `port ${p}`);
  assert.ok(ports.some(([, p]) => p === base), `one disk tried the taken port first:\n${r.stderr}`);
  assert.match(r.stderr, new RegExp(`NBD port \\[${base}\\] is in use on \\[[^\\]]+\\], trying the next port of \\[${range}\\]\\.`));
  const truth = Object.fromEntries(await Promise.all(d.disks.map(async (x) => [x.target, await d.expectedHash(x.target)] as const)));
  // The copy holds raw-format files for a restore: restore it through the remote hypervisor,
  // qemu-nbd there on the range again (its first port still taken).
  const out = join(work, "restored");
  const rr = await restoredEqual(set, out, d, truth, [...hv.args, "-P", range], hv.env);
  assert.match(rr.stderr, new RegExp(`NBD port \\[${base}\\] is in use on \\[[^\\]]+\\], trying the next port of \\[${range}\\]\\.`));
  assert.match(rr.stderr, new RegExp(`Starting remote NBD server on socket: \\[[^\\]]+:${base + 1}\\]`));
  assert.deepEqual(await remoteLeftovers(hv, [d.dir, out]), []);
});

async function remoteRun(hv: RemoteHypervisor, args: string[], label: string): Promise<ToolResult> {
  const r = assertOk(await ourBackup([...hv.args, "-n", ...args], { env: hv.env }), label);
  assert.deepEqual(logLines(r, "ERROR"), [], r.stderr);
  return r;
}
