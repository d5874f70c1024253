/**
 * SshHost (src/host/ssh.ts) against a real sshd on 127.0.0.1 (key auth only) with the system ssh
 * client: quoting of hostile arguments, binary-safe file transfer, no-replace moves, remote
 * processes that are stopped on kill, on close and when our process is SIGKILLed, login
 * failures in one line, host keys added on first use and refused when changed; and how remote
 * options and the URI make the ssh target.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { SshError, SshHost, type SshTarget } from "../../src/host/ssh.js";
import { sshTargetFor } from "../../src/connect/remote.js";
import { TargetExistsError } from "../../src/storage/durable.js";
import { ensureBuilt, ROOT, sh } from "../helpers/our-tool.js";
import { remoteLeftovers, startRemoteHypervisor, type RemoteHypervisor } from "../helpers/remote.js";
import { tempDir } from "../helpers/tmp.js";

/** Runs `fn` with the hypervisor's ssh wrapper first on PATH (private known_hosts). */
async function withSshPath<T>(hv: RemoteHypervisor, fn: () => Promise<T>): Promise<T> {
  const saved = process.env["PATH"];
  process.env["PATH"] = hv.env["PATH"];
  try {
    return await fn();
  } finally {
    process.env["PATH"] = saved;
  }
}

function target(hv: RemoteHypervisor, o: Partial<SshTarget> = {}): SshTarget {
  return { host: hv.sshd.address, user: "root", port: hv.sshd.port, keyFile: hv.sshd.keyFile, ...o };
}

/** Processes whose argv[0] is `name` (set with bash `exec -a`). */
async function remotePids(name: string): Promise<number[]> {
  const r = await sh("ps", ["-eo", "pid=,args="]);
  return r
    .split("\n")
    .map((l) => /^\s*(\d+)\s+(\S+)/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null && m[2] === name)
    .map((m) => Number(m[1]));
}

test("SshHost: quoting, binary files, no-replace moves, remote processes stopped on kill and on close", async (t) => {
  const hv = await startRemoteHypervisor(t);
  if (!hv) return t.skip("sshd not available (or not root)");
  const dir = await tempDir(t, "vnbt-sshhost-");
  await withSshPath(hv, async () => {
    const host = await SshHost.connect(target(hv));
    t.after(() => host.close());
    assert.equal(host.remote, true);
    assert.equal(host.name, hv.sshd.address);
    // The first login added the host key (StrictHostKeyChecking=accept-new, as the original's auto-add).
    const known = await sh("ssh-keygen", ["-F", `[${hv.sshd.address}]:${hv.sshd.port}`, "-f", hv.knownHosts]);
    assert.match(known, /ssh-ed25519 /);

    // Every argument arrives unchanged through the remote shell.
    const hostile = ["a b", "it's", `"dq"`, "$HOME", "`id`", "; rm -rf /nonexistent", "*", "", "-n", "x\\y", "tab\there", "ü"];
    const echoed = await host.run("printf", ["%s\\n", ...hostile]);
    assert.equal(echoed.exitCode, 0, echoed.stderr);
    assert.deepEqual(echoed.stdout.split("\n").slice(0, -1), hostile);
    assert.equal((await host.run("sh", ["-c", "exit 7"])).exitCode, 7);
    assert.equal((await host.run("no-such-command-vnbt", [])).exitCode, 127);

    // Binary-safe files; names with spaces and quotes.
    const data = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), randomBytes(3 << 20)]);
    const sub = join(dir, "sub dir", "it's");
    await host.mkdir(sub);
    const file = join(sub, "nv ram's.fd");
    assert.equal(await host.exists(file), false);
    await host.writeFile(file, data);
    assert.equal(await host.exists(file), true);
    assert.ok((await host.readFile(file)).equals(data));
    assert.ok((await readFile(file)).equals(data), "the bytes on disk");
    const local = join(dir, "local.bin");
    await writeFile(local, data.subarray(0, 100_000));
    await host.copyFileTo(local, join(sub, "copied"));
    assert.ok((await readFile(join(sub, "copied"))).equals(data.subarray(0, 100_000)));
    await assert.rejects(host.readFile(join(dir, "missing")), (e: Error) => e instanceof SshError && /No such file/.test(e.message));

    // Moves never replace.
    await host.writeFile(join(dir, "a"), "A");
    await host.writeFile(join(dir, "b"), "B");
    await assert.rejects(host.moveNoReplace(join(dir, "a"), join(dir, "b")), TargetExistsError);
    assert.equal(await readFile(join(dir, "b"), "utf8"), "B");
    await host.moveNoReplace(join(dir, "a"), join(dir, "c"));
    assert.equal(await readFile(join(dir, "c"), "utf8"), "A");
    assert.equal(await host.exists(join(dir, "a")), false);
    await host.remove(join(dir, "c"));
    assert.equal(await host.exists(join(dir, "c")), false);

    // A long-running command: its pid arrives, stderr is kept, kill stops it on the remote side.
    const marker = `vnbt-sleep-${process.pid}-a`;
    const p = host.spawn("bash", ["-c", `echo started >&2; exec -a ${marker} sleep 600`]);
    for (let i = 0; i < 100 && (p.pid === undefined || !p.stderrText().includes("started")); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(p.pid !== undefined && p.pid > 1, "remote pid reported");
    for (let i = 0; i < 100 && (await remotePids(marker)).length === 0; i++) await new Promise((res) => setTimeout(res, 50));
    assert.deepEqual(await remotePids(marker), [p.pid]);
    p.kill("SIGKILL");
    assert.equal(await p.exited, 137);
    assert.deepEqual(await remotePids(marker), []);

    // One that exits by itself: its exit code comes back.
    const q = host.spawn("sh", ["-c", "echo oops >&2; exit 3"]);
    assert.equal(await q.exited, 3);
    assert.match(q.stderrText(), /oops/);

    // close() stops what still runs and ends the master connection.
    const marker2 = `vnbt-sleep-${process.pid}-b`;
    const r = host.spawn("bash", ["-c", `exec -a ${marker2} sleep 600`]);
    for (let i = 0; i < 100 && (await remotePids(marker2)).length === 0; i++) await new Promise((res) => setTimeout(res, 50));
    assert.equal((await remotePids(marker2)).length, 1);
    await host.close();
    assert.equal(await r.exited, 143, "stopped with SIGTERM");
    assert.deepEqual(await remotePids(marker2), []);
    assert.deepEqual(await remoteLeftovers(hv, []), [], "no ssh master left");
  });
});

test("SshHost: when our process is SIGKILLed, the remote process and the ssh master end by themselves", async (t) => {
  const hv = await startRemoteHypervisor(t);
  if (!hv) return t.skip("sshd not available (or not root)");
  ensureBuilt();
  const marker = `vnbt-sleep-${process.pid}-orphan`;
  const script = `
    const { SshHost } = await import(${JSON.stringify(join(ROOT, "dist/host/ssh.js"))});
    const host = await SshHost.connect(${JSON.stringify(target(hv))});
    const p = host.spawn("bash", ["-c", "exec -a ${marker} sleep 600"]);
    const wait = () => p.pid === undefined ? setTimeout(wait, 20) : console.log("pid " + p.pid);
    wait();
    setInterval(() => {}, 1000);`;
  // Its control directory (left behind by a SIGKILL) goes into a temp dir of ours.
  const tmp = await tempDir(t, "vnbt-sshkill-");
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { env: { ...hv.env, TMPDIR: tmp }, stdio: ["ignore", "pipe", "inherit"] });
  t.after(() => void child.kill("SIGKILL"));
  const pid = await new Promise<number>((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /pid (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once("exit", (code) => reject(new Error(`helper exited ${code}`)));
  });
  for (let i = 0; i < 100 && (await remotePids(marker)).length === 0; i++) await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(await remotePids(marker), [pid]);
  child.kill("SIGKILL");
  const deadline = Date.now() + 10_000;
  while ((await remotePids(marker)).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(await remotePids(marker), [], "the remote process ended with our process");
  assert.deepEqual(await remoteLeftovers(hv, [], 10_000), [], "the ssh master ended too");
});

test("SshHost: login failures are one line; unknown host keys are added, changed ones refused", async (t) => {
  const hv = await startRemoteHypervisor(t);
  if (!hv) return t.skip("sshd not available (or not root)");
  const dir = await tempDir(t, "vnbt-sshfail-");
  await withSshPath(hv, async () => {
    await sh("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "wrongkey")]);
    await assert.rejects(SshHost.connect(target(hv, { keyFile: join(dir, "wrongkey") })), (e: Error) => {
      assert.ok(e instanceof SshError);
      assert.match(e.message, /Permission denied \(publickey\)/);
      assert.doesNotMatch(e.message, /\n/);
      return true;
    });
    await assert.rejects(SshHost.connect(target(hv, { user: "no-such-user-vnbt" })), /Permission denied/);
    await assert.rejects(SshHost.connect(target(hv, { host: "-oProxyCommand=true" })), /Invalid ssh host/);
    // Nothing listens there: refused, in one line.
    await assert.rejects(SshHost.connect(target(hv, { port: 1 })), /Connection refused/);
    // A changed host key (another machine answers at that address) is refused.
    await sh("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "otherhost")]);
    const other = (await readFile(join(dir, "otherhost.pub"), "utf8")).split(" ").slice(0, 2).join(" ");
    await writeFile(hv.knownHosts, `[${hv.sshd.address}]:${hv.sshd.port} ${other}\n`);
    await assert.rejects(SshHost.connect(target(hv)), /Host key verification failed|HOST IDENTIFICATION HAS CHANGED/);
  });
  assert.deepEqual(await remoteLeftovers(hv, []), []);
});

test("remote options: ssh target from the URI, --ssh-user/--ssh-port only when given, key from the URI's keyfile", () => {
  const base = { sshUser: "me", sshPort: 22, sshPrivateKey: null, nbdPorts: { first: 10809, last: 10809, range: false }, nbdIp: "", tls: false, tlsCert: "/etc/pki/qemu/" };
  const uri = "qemu+ssh://admin@hv1.example:2222/system?keyfile=/k/id&no_verify=1";
  assert.deepEqual(sshTargetFor({ ...base, uri, given: new Set() }), { host: "hv1.example", user: "admin", port: 2222, keyFile: "/k/id" });
  assert.deepEqual(sshTargetFor({ ...base, uri, sshUser: "ops", sshPort: 22, sshPrivateKey: "/other", given: new Set(["ssh_user", "ssh_port", "ssh_private_key"]) }), {
    host: "hv1.example",
    user: "ops",
    port: 22,
    keyFile: "/other",
  });
  assert.deepEqual(sshTargetFor({ ...base, uri: "qemu+ssh://hv2/system", given: new Set() }), { host: "hv2", user: "me", port: 22, keyFile: null });
  assert.deepEqual(sshTargetFor({ ...base, uri: "qemu+ssh://root@[fd00::5]/system", sshPort: 2200, given: new Set(["ssh_port"]) }), {
    host: "fd00::5",
    user: "root",
    port: 2200,
    keyFile: null,
  });
});
