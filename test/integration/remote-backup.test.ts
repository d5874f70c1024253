/**
 * Remote mode end to end on a "remote" hypervisor that is this machine: libvirtd through
 * `qemu+ssh://root@127.0.0.1:<port>/system` (a private sshd, key auth), our tools logging in with
 * the system ssh client (one ControlMaster connection), disk data over NBD on TCP — plain and
 * TLS (x509 made by scripts/make-test-certs.sh; libvirt's backup TLS dir for online jobs,
 * `--tls-cert` for qemu-nbd started over ssh). Online full → inc through libvirt pull-mode jobs,
 * offline copies of two disks through qemu-nbd on `--nbd-port + index`, boot files fetched and
 * uploaded over ssh, `-D` defining through the remote libvirt, two remote backups at once on
 * distinct ports. Every restore is compared bit-exact with the disk content read through NBD right
 * after the backup; no ssh connection or qemu-nbd may outlive a run.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile, stat } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { Connection } from "../../src/libvirt/connection.js";
import * as C from "../../src/libvirt/constants.js";
import { DomainXml } from "../../src/libvirt/domain-xml.js";
import { testDomain, MiB, type TestDomain } from "../helpers/domains.js";
import { assertOk, captureTruth, fileHash, imageHash, logLines, ourBackup, ourRestore, startOurBackup, type ToolResult } from "../helpers/our-tool.js";
import { freePorts, installLibvirtBackupCerts, remoteLeftovers, startRemoteHypervisor, type RemoteHypervisor } from "../helpers/remote.js";
import { makeTlsCerts } from "../helpers/nbd-servers.js";
import { tempDir } from "../helpers/tmp.js";


async function remoteBackup(hv: RemoteHypervisor, args: string[], label: string): Promise<ToolResult> {
  return assertOk(await ourBackup([...hv.args, "-n", ...args], { env: hv.env }), label);
}

async function remoteRestore(hv: RemoteHypervisor, args: string[], label: string): Promise<ToolResult> {
  const r = assertOk(await ourRestore([...hv.args, "-n", ...args], { env: hv.env }), label);
  assert.deepEqual(logLines(r, "ERROR"), [], `${label}: ${r.stderr}`);
  return r;
}

async function noJob(d: TestDomain): Promise<void> {
  assert.equal((await d.domain.jobInfo()).type, C.VIR_DOMAIN_JOB_NONE, "no libvirt job left");
}

async function checkRestored(dir: string, truth: Record<string, string>, label: string): Promise<void> {
  const names = await readdir(dir);
  assert.ok(!names.some((n) => n.endsWith(".partial")), `${label}: no partial image: ${names.join(" ")}`);
  for (const [disk, hash] of Object.entries(truth)) assert.equal(await imageHash(join(dir, `${disk}.qcow2`), "qcow2"), hash, `${label}: ${disk}`);
}

test("online full → inc over qemu+ssh, NBD over TCP plain and TLS; remote restore (-c -D through the remote libvirt) bit-exact", async (t) => {
  const hv = await startRemoteHypervisor(t);
  if (!hv) return t.skip("sshd not available (or not root)");
  const d = await testDomain(t, { disks: [{ size: 32 * MiB }], start: true });
  const work = await tempDir(t, "vnbt-remote-");
  const set = join(work, "set");
  const port = await freePorts();
  const node = hostname();

  const full = await remoteBackup(hv, ["-d", d.name, "-l", "full", "-o", set, "-P", String(port), "-v"], "remote full");
  assert.match(full.stderr, new RegExp(`INFO .*Connecting remote system \\[${hv.sshd.address}\\] via ssh, username: \\[root\\]`));
  // The NBD host is the name the remote libvirt reports; the job's server is TCP on -P.
  assert.match(full.stderr, new RegExp(`Remote NBD Endpoint host: \\[${node}:${port}\\]`));
  assert.match(full.stderr, new RegExp(`Waiting until NBD server at \\[nbd://${node}:${port}/sda\\] is up\\.`));
  // Two connections to the job's export (qemu offers multi-conn for it): disk-backup.ts TCP_CONNECTIONS.
  assert.match(full.stderr, new RegExp(`NBD connections to \\[nbd://${node}:${port}/sda\\]: \\[2\\]`));
  // Reads in flight sized by the negotiation's round trip (read-budget.ts): on loopback ~the local 8 MiB.
  const rtt = new RegExp(`NBD round trip to \\[nbd://${node}:${port}/sda\\]: \\[([0-9.]+) ms\\], reads in flight up to \\[([0-9.]+) ?MiB\\]`).exec(full.stderr);
  assert.ok(rtt, "the round trip is logged");
  assert.ok(Number(rtt[1]) < 20 && Number(rtt[2]) >= 8 && Number(rtt[2]) <= 12, `loopback: ${rtt[0]}`);
  assert.match(full.stderr, /Saved qcow image config to: \[.*sda\.virtnbdbackup\.0\.qcow\.json\]/, "qemu-img info over ssh");
  const truth0 = await captureTruth(d);
  await noJob(d);
  assert.deepEqual(await remoteLeftovers(hv, [d.dir]), []);

  await d.writeRandom("sda", 3 * MiB, 768 * 1024, 41);
  await d.writePattern("sda", 20 * MiB, 64 * 1024, 0x5a);
  const inc = await remoteBackup(hv, ["-d", d.name, "-l", "inc", "-o", set, "-P", String(port)], "remote inc");
  assert.match(inc.stderr, /Backup level: \[inc\]/);
  const truth1 = await captureTruth(d);
  assert.notEqual(truth1["sda"], truth0["sda"]);
  assert.deepEqual(await remoteLeftovers(hv, [d.dir]), []);

  // Remote restore: image created over ssh, qemu-nbd there on -P, our client writing over TCP.
  const all = join(work, "all");
  const r = await remoteRestore(hv, ["-i", set, "-o", all, "-P", String(port)], "remote restore");
  assert.match(r.stderr, new RegExp(`Starting remote NBD server on socket: \\[${node}:${port}\\]`));
  await checkRestored(all, truth1, "remote restore");
  const first = join(work, "until0");
  await remoteRestore(hv, ["-i", set, "-o", first, "-P", String(port), "--until", "virtnbdbackup.0"], "remote restore --until");
  await checkRestored(first, truth0, "--until virtnbdbackup.0");

  // -c -D: the config is adjusted and the domain defined through the qemu+ssh connection.
  const restoredName = `${d.name}-rr`;
  t.after(async () => {
    const conn = await Connection.open("qemu:///system");
    const dom = await conn.lookupDomain(restoredName).catch(() => null);
    if (dom) {
      await dom.undefine(0).catch(() => undefined);
      dom.free();
    }
    await conn.close();
  });
  const defined = join(work, "defined");
  const rd = await remoteRestore(hv, ["-i", set, "-o", defined, "-P", String(port), "-c", "-D", "-N", restoredName], "remote restore -c -D");
  assert.match(rd.stderr, /Defined VM/);
  await checkRestored(defined, truth1, "-c -D");
  const conn = await Connection.open("qemu:///system");
  try {
    const dom = await conn.lookupDomain(restoredName);
    assert.equal(DomainXml.parse(await dom.xmlDesc(0)).disk("sda")?.sourcePath, join(defined, "sda.qcow2"));
    dom.free();
  } finally {
    await conn.close();
  }
  assert.deepEqual(await remoteLeftovers(hv, [d.dir, work]), []);

  // TLS: libvirt's backup TLS dir gets the server certificate (SAN: every name the NBD server is reached by).
  const pki = await installLibvirtBackupCerts(t, ["localhost", "127.0.0.1", node]);
  if (!pki) {
    t.diagnostic("libvirt's backup TLS directory already holds certificates (or is in use): TLS part skipped");
    return;
  }
  const tlsSet = join(work, "tls");
  const tls = ["--tls", "--tls-cert", pki.clientDir];
  const tfull = await remoteBackup(hv, ["-d", d.name, "-l", "full", "-o", tlsSet, "-P", String(port), ...tls], "remote full --tls");
  assert.match(tfull.stderr, new RegExp(`Waiting until NBD server at \\[nbds://${node}:${port}/sda\\] is up\\.`));
  await d.writeRandom("sda", 9 * MiB, 512 * 1024, 42);
  // -q: nbdinfo (libnbd) reads the extents over TLS too, with the same certificates.
  const tinc = await remoteBackup(hv, ["-d", d.name, "-l", "inc", "-o", tlsSet, "-P", String(port), ...tls, "-z", "-q"], "remote inc --tls -z -q");
  assert.match(tinc.stderr, /Using qemu tools to query extents/);
  const truth2 = await captureTruth(d);
  await noJob(d);
  const tlsOut = join(work, "tls-restored");
  const tr = await remoteRestore(hv, ["-i", tlsSet, "-o", tlsOut, "-P", String(port), ...tls], "remote restore --tls");
  // (qemu-nbd started by us exports the disk under a name with a random tag)
  assert.match(tr.stderr, new RegExp(`Waiting until NBD server at \\[nbds://${node}:${port}/sda\\.[0-9a-f]{8}\\] is up\\.`));
  await checkRestored(tlsOut, truth2, "--tls");
  assert.deepEqual(await remoteLeftovers(hv, [d.dir, work]), []);
});

test("offline copy of three disks (one raw) over qemu+ssh: qemu-nbd on --nbd-port + index (TLS), boot files over ssh; remote restore uploads them", async (t) => {
  const hv = await startRemoteHypervisor(t);
  if (!hv) return t.skip("sshd not available (or not root)");
  const d = await testDomain(t, { disks: [{ size: 16 * MiB }, { size: 8 * MiB }, { format: "raw", size: 8 * MiB }] });
  // UEFI loader + nvram (never booted here: offline backups only read the files).
  const { nvram } = await d.addUefi();
  const work = await tempDir(t, "vnbt-remote-off-");
  const set = join(work, "set");
  const pki = await makeTlsCerts(t);
  const port = await freePorts(3);
  const tls = ["--tls", "--tls-cert", pki, "-I", "127.0.0.1"];
  const r = await remoteBackup(hv, ["-d", d.name, "-l", "copy", "-o", set, "-P", String(port), "--raw", ...tls], "remote offline copy");
  assert.match(r.stderr, new RegExp(`\\[sda\\].*Offline backup, starting remote NBD server, socket: \\[${hv.sshd.address}:.*\\], port: \\[${port}\\]`));
  assert.match(r.stderr, new RegExp(`\\[sdb\\].*Offline backup, starting remote NBD server, socket: \\[${hv.sshd.address}:.*\\], port: \\[${port + 1}\\]`));
  assert.match(r.stderr, new RegExp(`Waiting until NBD server at \\[nbds://127\\.0\\.0\\.1:${port + 1}/sdb\\.[0-9a-f]{8}\\] is up\\.`));
  assert.match(r.stderr, new RegExp(`\\[sdc\\].*Offline backup, starting remote NBD server, socket: \\[.*\\], port: \\[${port + 2}\\]`));
  const truth = await captureTruth(d);
  assert.equal(truth["sda"], d.expectedHash("sda"));
  const names = await readdir(set);
  for (const f of ["sda.copy.data", "sdb.copy.data", "sdc.copy.data", "sda.copy.qcow.json", "sdb.copy.qcow.json", "OVMF_CODE_4M.fd", `${d.name}_VARS.fd`]) {
    assert.ok(names.includes(f), `${f} in ${names.join(" ")}`);
  }
  assert.equal(await fileHash(join(set, `${d.name}_VARS.fd`)), await fileHash(nvram), "nvram fetched over ssh");
  assert.equal(JSON.parse(await readFile(join(set, "sda.copy.qcow.json"), "utf8"))["virtual-size"], 16 * MiB);
  assert.deepEqual(await remoteLeftovers(hv, [d.dir]), []);

  // The restored copy (-c) gets its own nvram, uploaded next to its disks on the hypervisor.
  const saved = await fileHash(nvram);
  const out = join(work, "restored");
  const rr = await remoteRestore(hv, ["-i", set, "-o", out, "-P", String(port), ...tls, "-c", "--raw"], "remote restore of the offline copy");
  assert.match(rr.stderr, new RegExp(`Restoring configured nvram file .* to \\[${join(out, `restore_${d.name}_VARS.fd`)}\\]`));
  assert.equal(await fileHash(join(out, `restore_${d.name}_VARS.fd`)), saved, "nvram uploaded over ssh");
  const { sdc: rawTruth, ...qcowTruth } = truth;
  await checkRestored(out, qcowTruth, "offline copy");
  // The raw image went up through ssh into dd (sparse): same bytes.
  assert.equal(await fileHash(join(out, "sdc.raw")), rawTruth, "raw image uploaded");
  assert.ok((await stat(join(out, "sdc.raw"))).blocks * 512 < 8 * MiB, "zero blocks stayed holes");
  assert.equal(DomainXml.parse(await readFile(join(out, "vmconfig.xml"), "utf8")).disk("sdc")?.sourcePath, join(out, "sdc.raw"));
  assert.equal(DomainXml.parse(await readFile(join(out, "vmconfig.xml"), "utf8")).disk("sdb")?.sourcePath, join(out, "sdb.qcow2"));
  assert.deepEqual(await remoteLeftovers(hv, [d.dir, work]), []);
});

test("two remote backups at once on distinct --nbd-port values", async (t) => {
  const hv = await startRemoteHypervisor(t);
  if (!hv) return t.skip("sshd not available (or not root)");
  const [a, b] = await Promise.all([testDomain(t, { disks: [{ size: 16 * MiB }], start: true }), testDomain(t, { disks: [{ size: 16 * MiB }], start: true })]);
  const work = await tempDir(t, "vnbt-remote-two-");
  const pa = await freePorts();
  let pb = await freePorts();
  while (pb === pa) pb = await freePorts();
  const run = (d: TestDomain, port: number) =>
    startOurBackup([...hv.args, "-n", "-d", d.name, "-l", "full", "-o", join(work, d.name), "-P", String(port)], { env: hv.env }).result;
  const [ra, rb] = await Promise.all([run(a!, pa), run(b!, pb)]);
  assertOk(ra, "backup a");
  assertOk(rb, "backup b");
  assert.match(ra.stderr, new RegExp(`Remote NBD Endpoint host: \\[.*:${pa}\\]`));
  assert.match(rb.stderr, new RegExp(`Remote NBD Endpoint host: \\[.*:${pb}\\]`));
  for (const d of [a!, b!]) {
    const truth = await captureTruth(d);
    await noJob(d);
    const out = join(work, `${d.name}-restored`);
    assertOk(await ourRestore(["-i", join(work, d.name), "-o", out, "-n"]), `restore ${d.name}`);
    await checkRestored(out, truth, d.name);
  }
  assert.deepEqual(await remoteLeftovers(hv, [a!.dir, b!.dir]), []);
});

/** Starts a remote backup and resolves once a stderr line matches `when`. */
async function startAndWait(hv: RemoteHypervisor, args: string[], when: RegExp, env = hv.env): Promise<ReturnType<typeof startOurBackup>> {
  const p = startOurBackup([...hv.args, "-n", ...args], { env });
  await new Promise<void>((resolve, reject) => {
    let err = "";
    p.child.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
      if (when.test(err)) resolve();
    });
    void p.result.then((r) => reject(new Error(`ended before ${when}: ${r.all}`)));
  });
  return p;
}

test("interrupted remote backups: SIGTERM aborts the job; after SIGKILL the hypervisor's qemu-nbd and our ssh connection end by themselves", async (t) => {
  const step = (m: string) => process.stderr.write(`# ${new Date().toISOString()} interrupted remote backups: ${m}\n`);
  step("start sshd");
  const hv = await startRemoteHypervisor(t);
  if (!hv) return t.skip("sshd not available (or not root)");
  // One disk: with a second one queued, a signal currently lets the worker start it while the job
  // is aborted, and the job lingers (locally too): a matter of the signal handling, reported.
  step("domain");
  const d = await testDomain(t, { disks: [{ size: 16 * MiB }], start: true });
  const work = await tempDir(t, "vnbt-remote-int-");
  const port = await freePorts();

  // Online, SIGTERM once the data flows: the job is aborted, exit 1, nothing left.
  step("online run");
  const online = await startAndWait(hv, ["-d", d.name, "-l", "full", "-o", join(work, "online"), "-P", String(port), "-w", "1"], /Start receiving backup extents/);
  step("online run is copying: SIGTERM");
  online.child.kill("SIGTERM");
  const r = await online.result;
  assert.equal(r.exitCode, 1, r.all);
  assert.match(r.stderr, /Signal caught: 15/);
  step(`online run exited ${r.exitCode}; job?`);
  await noJob(d);
  assert.deepEqual(await remoteLeftovers(hv, [d.dir]), []);
  step("destroy the domain");

  // Offline, SIGKILL while the hypervisor runs qemu-nbd for the disk. (Its ssh control directory,
  // which a killed run leaves behind, goes into our temp dir.)
  await d.destroy();
  const offline = await startAndWait(hv, ["-d", d.name, "-l", "copy", "-o", join(work, "offline"), "-P", String(port), "-w", "1"], /Waiting until NBD server at/, {
    ...hv.env,
    TMPDIR: await tempDir(t, "vnbt-remote-tmp-"),
  });
  step("offline run waits for its qemu-nbd: SIGKILL");
  offline.child.kill("SIGKILL");
  await offline.result;
  assert.deepEqual(await remoteLeftovers(hv, [d.dir], 10_000), [], "qemu-nbd and the ssh master ended with our process");
  step("copy after the kill");
  // The images are not locked any more: a new remote backup works.
  assertOk(await ourBackup([...hv.args, "-n", "-d", d.name, "-l", "copy", "-o", join(work, "after"), "-P", String(port)], { env: hv.env }), "copy after the kill");
});
