/**
 * Remote mode across a real address boundary: our tools run inside a network namespace that
 * reaches this machine (the "hypervisor": libvirtd, qemu, qemu-nbd, a private sshd listening on
 * the veth address) only through a veth pair. libvirt goes over qemu+ssh to 10.213.x.1, the NBD
 * traffic to `--nbd-ip 10.213.x.1`; the namespace's interface counters show the disk data really
 * crossed. Online full → inc and the remote restore are compared bit-exact. Then a firewall in the
 * namespace: dropped packets end the run after the connect timeout, a rejected port after the
 * original's 20 attempts — each with one clear line, the job aborted, exit 1.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import * as C from "../../src/libvirt/constants.js";
import { testDomain, MiB, type TestDomain } from "../helpers/domains.js";
import { assertOk, captureTruth, imageHash, logLines, ourBackup, ourRestore, type ToolResult } from "../helpers/our-tool.js";
import { createNetns, freePorts, remoteLeftovers, startRemoteHypervisor } from "../helpers/remote.js";
import { tempDir } from "../helpers/tmp.js";

async function noJob(d: TestDomain): Promise<void> {
  assert.equal((await d.domain.jobInfo()).type, C.VIR_DOMAIN_JOB_NONE, "no libvirt job left");
}

function oneCause(r: ToolResult, cause: RegExp, label: string): void {
  assert.equal(r.exitCode, 1, `${label}: exit code\n${r.stderr}`);
  const errors = logLines(r, "ERROR");
  assert.equal(errors.filter((l) => cause.test(l)).length, 1, `${label}: one line matching ${cause}:\n${r.stderr}`);
  assert.deepEqual(
    errors.filter((l) => !cause.test(l) && !/Error during backup$/.test(l)),
    [],
    `${label}: no other error lines:\n${r.stderr}`,
  );
}

test("remote mode from a network namespace: qemu+ssh and NBD over a veth pair; firewalled NBD port", async (t) => {
  const ns = await createNetns(t);
  if (!ns) return t.skip("network namespaces not available");
  const hv = await startRemoteHypervisor(t, { listen: ns.hostAddress });
  if (!hv) return t.skip("sshd not available (or not root)");
  const d = await testDomain(t, { disks: [{ size: 32 * MiB }], start: true });
  const work = await tempDir(t, "vnbt-remote-ns-");
  const set = join(work, "set");
  const port = await freePorts();
  const inNs = { env: hv.env, netns: ns.name };
  const common = [...hv.args, "-n", "-P", String(port), "-I", ns.hostAddress];
  const uri = `nbd://${ns.hostAddress}:${port}/sda`;

  // The namespace really is isolated: the hypervisor's loopback is out of reach from inside.
  await assert.rejects(ns.exec("bash", ["-c", `exec 3<>/dev/tcp/127.0.0.1/${hv.sshd.port}`]), "no sshd on the namespace's loopback");
  await ns.exec("bash", ["-c", `exec 3<>/dev/tcp/${ns.hostAddress}/${hv.sshd.port}`]);
  const rx0 = await ns.rxBytes();
  const full = assertOk(await ourBackup([...common, "-d", d.name, "-l", "full", "-o", set], inNs), "full from the namespace");
  assert.match(full.stderr, new RegExp(`Waiting until NBD server at \\[${uri.replace(/[./]/g, "\\$&")}\\] is up\\.`));
  const dataBytes = Number(/(\d+) bytes \[[^\]]+\] of data extents to backup/.exec(full.stderr)?.[1]);
  assert.ok(dataBytes > MiB, full.stderr);
  assert.ok((await ns.rxBytes()) - rx0 >= dataBytes, "the disk data crossed the veth pair");
  await d.writeRandom("sda", 5 * MiB, MiB, 77);
  assertOk(await ourBackup([...common, "-d", d.name, "-l", "inc", "-o", set], inNs), "inc from the namespace");
  const truth = await captureTruth(d);
  await noJob(d);

  const out = join(work, "restored");
  const r = assertOk(await ourRestore([...common, "-i", set, "-o", out], inNs), "restore from the namespace");
  assert.match(r.stderr, new RegExp(`Starting remote NBD server on socket: \\[${ns.hostAddress.replace(/\./g, "\\.")}:${port}\\]`));
  assert.deepEqual((await readdir(out)).sort(), ["sda.qcow2", "vmconfig.xml"]);
  assert.equal(await imageHash(join(out, "sda.qcow2"), "qcow2"), truth["sda"]);
  assert.deepEqual(await remoteLeftovers(hv, [d.dir, work]), []);

  // Packets to the NBD port dropped in the namespace: one attempt, the connect timeout, one line.
  await ns.exec("iptables", ["-A", "OUTPUT", "-p", "tcp", "-d", ns.hostAddress, "--dport", String(port), "-j", "DROP"]);
  const started = Date.now();
  const dropped = await ourBackup([...common, "-d", d.name, "-l", "copy", "-o", join(work, "dropped")], inNs);
  const took = Date.now() - started;
  oneCause(dropped, new RegExp(`Disk backup failed: \\[NBD server \\[${uri.replace(/[./]/g, "\\$&")}\\] not reachable: no answer within 10 s`), "dropped");
  assert.ok(took < 30_000, `gave up after the connect timeout, not 20 of them (${took} ms)`);
  assert.match(dropped.stderr, /Backup jobs finished, stopping backup task\./);
  await noJob(d);

  // Rejected (closed port as seen from the client): the original's 20 attempts, then one line.
  await ns.exec("iptables", ["-F", "OUTPUT"]);
  await ns.exec("iptables", ["-A", "OUTPUT", "-p", "tcp", "-d", ns.hostAddress, "--dport", String(port), "-j", "REJECT", "--reject-with", "tcp-reset"]);
  const rejected = await ourBackup([...common, "-d", d.name, "-l", "copy", "-o", join(work, "rejected")], inNs);
  oneCause(rejected, /Disk backup failed: \[NBD server \[.*\]: Timeout during connection to NBD server backend\. \(last error: .*ECONNREFUSED/, "rejected");
  assert.equal((rejected.stderr.match(/Waiting for NBD Server, Retry: \d+/g) ?? []).length, 20);
  await noJob(d);
  assert.deepEqual(await remoteLeftovers(hv, [d.dir, work]), []);
});
