/**
 * Remote mode failures on the local "remote" hypervisor (private sshd, libvirtd through
 * qemu+ssh, real qemu / qemu-nbd): ssh login refused, an NBD address that cannot be used, the
 * NBD port taken by something else, TLS certificates that do not match, unusable TLS files, a
 * relative restore target. Each one: the cause in one ERROR line, exit 1, no libvirt job, no
 * ssh connection or qemu-nbd left behind, no half-restored image.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import net from "node:net";
import { hostname } from "node:os";
import { join } from "node:path";
import * as C from "../../src/libvirt/constants.js";
import { testDomain, MiB, type TestDomain } from "../helpers/domains.js";
import { assertOk, logLines, ourBackup, ourRestore, sh, type ToolResult } from "../helpers/our-tool.js";
import { makeTlsCerts } from "../helpers/nbd-servers.js";
import { freePorts, installLibvirtBackupCerts, remoteLeftovers, startRemoteHypervisor, type RemoteHypervisor } from "../helpers/remote.js";
import { tempDir } from "../helpers/tmp.js";

/** Exit 1 with `cause` in one ERROR line; any other ERROR line is the final "Error during backup". */
function assertOneCause(r: ToolResult, cause: RegExp, label: string): void {
  assert.equal(r.exitCode, 1, `${label}: exit code\n${r.stderr}`);
  const errors = logLines(r, "ERROR");
  const matching = errors.filter((l) => cause.test(l));
  assert.equal(matching.length, 1, `${label}: one line matching ${cause}:\n${r.stderr}`);
  assert.deepEqual(
    errors.filter((l) => !cause.test(l) && !/Error during backup$/.test(l)),
    [],
    `${label}: no other error lines:\n${r.stderr}`,
  );
  assert.doesNotMatch(r.stderr, /Traceback|    at /, `${label}: no stack trace`);
}

async function noJob(d: TestDomain): Promise<void> {
  if (await d.isRunning()) assert.equal((await d.domain.jobInfo()).type, C.VIR_DOMAIN_JOB_NONE, "no libvirt job left");
}

async function backup(hv: RemoteHypervisor, args: string[]): Promise<ToolResult> {
  return ourBackup([...hv.args, "-n", ...args], { env: hv.env });
}

test("remote errors: ssh login refused, unusable TLS files, relative restore target, --nbd-ip not on the host, port taken", async (t) => {
  const hv = await startRemoteHypervisor(t);
  if (!hv) return t.skip("sshd not available (or not root)");
  const d = await testDomain(t, { disks: [{ size: 16 * MiB }], start: true });
  const work = await tempDir(t, "vnbt-remote-err-");
  const port = await freePorts();
  await sh("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(work, "wrongkey")]);

  // ssh login refused (libvirt itself gets in with the URI's key; our login uses --ssh-private-key).
  const auth = await ourBackup([...hv.args, "-n", "--ssh-private-key", join(work, "wrongkey"), "-d", d.name, "-l", "full", "-o", join(work, "auth"), "-P", String(port)], {
    env: hv.env,
  });
  assertOneCause(auth, /Remote backup detected but ssh session setup failed: \[.*Permission denied \(publickey\)/, "ssh auth");
  assert.doesNotMatch(auth.stderr, /Starting backup job/);
  await noJob(d);

  // A real set for the restore cases.
  const set = join(work, "set");
  assertOk(await backup(hv, ["-d", d.name, "-l", "full", "-o", set, "-P", String(port)]), "full");
  const r1 = await ourRestore([...hv.args, "-n", "--ssh-user", "nobody-vnbt", "-i", set, "-o", join(work, "r1")], { env: hv.env });
  assertOneCause(r1, /Remote restore detected but ssh session setup failed: \[.*Permission denied/, "restore ssh auth");
  const rel = await ourRestore([...hv.args, "-n", "-i", set, "-o", "relative/out"], { env: hv.env });
  assertOneCause(rel, /Absolute target path required for restore to remote system/, "relative -o");

  // --tls with a directory lacking the certificates: refused before any job starts.
  const notls = await backup(hv, ["-d", d.name, "-l", "copy", "-o", join(work, "notls"), "-P", String(port), "--tls", "--tls-cert", work]);
  assertOneCause(notls, /Unable to use the TLS certificates in \[.*\] \(--tls-cert\): TLS certificate file not found: \[.*ca-cert\.pem\]/, "no TLS files");
  assert.doesNotMatch(notls.stderr, /Starting backup job/);

  // --nbd-ip that is not an address of the hypervisor: qemu cannot listen there; the job does not start.
  const badIp = await backup(hv, ["-d", d.name, "-l", "copy", "-o", join(work, "badip"), "-P", String(port), "-I", "192.0.2.1"]);
  assertOneCause(badIp, /Failed to start backup: \[.*Cannot assign requested address\]/, "online --nbd-ip");
  await noJob(d);

  // The NBD port is taken: online, libvirt's NBD server cannot bind.
  // (it hangs up on whoever connects: like a foreign service on that port)
  const blocker = net.createServer((s) => s.on("error", () => undefined).destroy());
  await new Promise<void>((resolve) => blocker.listen(port, "0.0.0.0", resolve));
  t.after(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
  const busy = await backup(hv, ["-d", d.name, "-l", "copy", "-o", join(work, "busy"), "-P", String(port)]);
  assertOneCause(busy, /Failed to start backup: \[.*(Address already in use|Failed to bind).*\]/, "online port taken");
  await noJob(d);
  // Remote restore: qemu-nbd there cannot bind; its message is reported and the partial image removed.
  const out = join(work, "restore-busy");
  const rb = await ourRestore([...hv.args, "-n", "-i", set, "-o", out, "-P", String(port)], { env: hv.env });
  assertOneCause(rb, /Disk restore failed: \[qemu-nbd for \[.*sda\.qcow2\.partial\] on \[127\.0\.0\.1\] exited \(1\): .*Address already in use/, "restore port taken");
  await assert.rejects(readdir(out), { code: "ENOENT" }, "no image left, nor the directory the failed restore made");
  await new Promise<void>((resolve) => blocker.close(() => resolve()));

  // Offline: qemu-nbd on the hypervisor cannot bind to that --nbd-ip.
  await d.destroy();
  const offIp = await backup(hv, ["-d", d.name, "-l", "copy", "-o", join(work, "offip"), "-P", String(port), "-I", "192.0.2.1"]);
  assertOneCause(offIp, /Disk backup failed: \[qemu-nbd for \[.*\] on \[127\.0\.0\.1\] exited \(1\): .*Cannot assign requested address/, "offline --nbd-ip");
  assert.deepEqual(await remoteLeftovers(hv, [d.dir, work]), []);
});

test("remote errors: TLS certificate mismatch (server name, CA) ends the run with one line; the job is aborted", async (t) => {
  const hv = await startRemoteHypervisor(t);
  if (!hv) return t.skip("sshd not available (or not root)");
  const d = await testDomain(t, { disks: [{ size: 16 * MiB }] });
  const work = await tempDir(t, "vnbt-remote-tls-");
  const port = await freePorts();

  // Offline (qemu-nbd over ssh with --tls): the certificate names only "localhost", we connect to 127.0.0.1.
  const onlyLocalhost = await makeTlsCerts(t, ["localhost"]);
  const name = await backup(hv, ["-d", d.name, "-l", "copy", "-o", join(work, "name"), "-P", String(port), "--tls", "--tls-cert", onlyLocalhost, "-I", "127.0.0.1"]);
  assertOneCause(name, /Disk backup failed: \[TLS handshake with NBD server \[nbds:\/\/127\.0\.0\.1:\d+\/sda\.[0-9a-f]+\] failed: .*127\.0\.0\.1.*cert/, "server name mismatch");
  // Restore the same way: no image left behind.
  const good = await makeTlsCerts(t);
  const set = join(work, "set");
  assertOk(await backup(hv, ["-d", d.name, "-l", "copy", "-o", set, "-P", String(port), "--tls", "--tls-cert", good, "-I", "127.0.0.1"]), "offline copy --tls");
  const out = join(work, "out");
  const rr = await ourRestore([...hv.args, "-n", "-i", set, "-o", out, "-P", String(port), "--tls", "--tls-cert", onlyLocalhost, "-I", "127.0.0.1"], { env: hv.env });
  assertOneCause(rr, /Disk restore failed: \[TLS handshake with NBD server \[nbds:\/\/127\.0\.0\.1:\d+\/sda\.[0-9a-f]+\] failed/, "restore name mismatch");
  await assert.rejects(readdir(out), { code: "ENOENT" }, "no image left, nor the directory the failed restore made");
  assert.deepEqual(await remoteLeftovers(hv, [d.dir, work]), []);

  // Online: libvirt's server certificate is from one CA, our --tls-cert directory trusts another.
  const pki = await installLibvirtBackupCerts(t, ["localhost", "127.0.0.1", hostname()]);
  if (!pki) {
    t.diagnostic("libvirt's backup TLS directory already holds certificates (or is in use): online TLS mismatch skipped");
    return;
  }
  await d.start();
  const otherCa = await makeTlsCerts(t, ["localhost", "127.0.0.1", hostname()]);
  const ca = await backup(hv, ["-d", d.name, "-l", "full", "-o", join(work, "ca"), "-P", String(port), "--tls", "--tls-cert", otherCa]);
  assertOneCause(ca, /Disk backup failed: \[TLS handshake with NBD server \[nbds:\/\/.*\/sda\] failed: .*(issuer|certificate)/, "CA mismatch");
  assert.match(ca.stderr, /Backup jobs finished, stopping backup task\./, "the job is aborted");
  await noJob(d);
  assert.deepEqual(await remoteLeftovers(hv, [d.dir, work]), []);
});
