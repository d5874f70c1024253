/**
 * A "remote" hypervisor on this machine for remote-mode tests: libvirtd reached as
 * `qemu+ssh://root@<addr>:<port>/system` through a private sshd (key auth only), our tools
 * logging in with ssh to the same sshd, NBD over TCP.
 *
 *   const hv = await startRemoteHypervisor(t);                 // null: no sshd / not root
 *   await ourBackup([...hv.args, "-d", d.name, "-l", "full", "-o", dir, "-P", String(port)], { env: hv.env });
 *   await remoteLeftovers(hv, [d.dir])                          // ssh masters / qemu-nbd still running
 *   const pki = await installLibvirtBackupCerts(t, names)       // libvirt's backup TLS dir, or null (skip)
 *   const ns = await createNetns(t)                             // a network namespace behind a veth pair, or null
 *
 * ssh (ours and libvirt's) runs through a wrapper on PATH that keeps host keys in a private
 * known_hosts file: the tests never touch ~/.ssh/known_hosts, and they can check that unknown
 * host keys are added (the original's auto-add) and changed ones refused.
 *
 * Everything is undone by t.after, also when the test fails: sshd, namespaces and veth pairs,
 * certificates installed into system directories (only files and directories created here; a
 * directory that already holds certificates is never touched and the caller skips instead).
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, chown, copyFile, mkdir, readFile, rm, rmdir, writeFile } from "node:fs/promises";
import net from "node:net";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { startPrivateSshd, type PrivateSshd } from "./libvirt-sshd.js";
import { pidAlive } from "./process.js";
import { makeTlsCerts } from "./nbd-servers.js";
import { tempDir } from "./tmp.js";

const execFileP = promisify(execFile);

interface After {
  after(fn: () => Promise<void> | void): void;
}

export interface RemoteHypervisor {
  sshd: PrivateSshd;
  /** qemu+ssh URI of libvirtd through the private sshd. */
  uri: string;
  /** `-U <uri>` plus the ssh key: the remote options every run needs. */
  args: string[];
  /** Environment for our tools: PATH with the known_hosts wrapper for ssh. */
  env: NodeJS.ProcessEnv;
  /** The private known_hosts file all ssh clients of this hypervisor use. */
  knownHosts: string;
}

/** Starts the private sshd (listening on `listen`, default 127.0.0.1) and the ssh wrapper. */
export async function startRemoteHypervisor(t: After, opts: { listen?: string; sftp?: boolean } = {}): Promise<RemoteHypervisor | null> {
  const sshd = await startPrivateSshd(t as { after(fn: () => Promise<void>): void }, opts);
  if (!sshd) return null;
  const dir = await tempDir(t as { after(fn: () => Promise<void>): void }, "vnbt-sshbin-");
  const knownHosts = join(dir, "known_hosts");
  const bin = join(dir, "bin");
  await mkdir(bin);
  await writeFile(
    join(bin, "ssh"),
    `#!/bin/sh\nexec /usr/bin/ssh -o UserKnownHostsFile=${knownHosts} -o GlobalKnownHostsFile=/dev/null "$@"\n`,
    { mode: 0o755 },
  );
  const uri = sshd.uri("/system");
  return {
    sshd,
    uri,
    args: ["-U", uri, "--ssh-private-key", sshd.keyFile],
    env: { ...process.env, PATH: `${bin}:${process.env["PATH"] ?? "/usr/bin:/bin"}` },
    knownHosts,
  };
}

/** Processes a run must not leave behind: ssh connections to this sshd, qemu-nbd on files under `paths`. */
export async function remoteLeftovers(hv: RemoteHypervisor, paths: string[], waitMs = 3000): Promise<string[]> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const { stdout } = await execFileP("ps", ["-eo", "pid=,args="], { maxBuffer: 16 << 20 });
    const left = stdout
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => {
        const args = l.replace(/^\d+\s+/, "");
        if (/^(\/usr\/bin\/)?ssh\s/.test(args) && args.includes(`-p ${hv.sshd.port}`) && /ControlPath=.*virtnbd-ssh-/.test(args)) return true;
        return /qemu-nbd/.test(args) && paths.some((p) => args.includes(p));
      });
    if (left.length === 0 || Date.now() > deadline) return left;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A free TCP port on 127.0.0.1 whose `count - 1` successors are free too. */
export async function freePorts(count = 1): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20000 + Math.floor(Math.random() * 40000);
    let ok = true;
    for (let i = 0; i < count && ok; i++) ok = await portFree(base + i);
    if (ok) return base;
  }
  throw new Error("no free TCP ports");
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "0.0.0.0", () => s.close(() => resolve(true)));
  });
}

// ------------------------------------------------------------ libvirt backup TLS certificates

const QEMU_CONF = "/etc/libvirt/qemu.conf";
const SERVER_FILES = ["ca-cert.pem", "server-cert.pem", "server-key.pem"] as const;
const MARKER = ".vnbt-test-certs";

function confValue(conf: string, key: string): string | null {
  const m = new RegExp(`^\\s*${key}\\s*=\\s*"([^"]*)"`, "m").exec(conf);
  return m ? m[1]! : null;
}

/**
 * Where libvirtd's qemu driver looks for backup-job TLS certificates (qemu.conf
 * backup_tls_x509_cert_dir; unset: /etc/pki/libvirt-backup when that existed at daemon start,
 * else default_tls_x509_cert_dir, default /etc/pki/qemu).
 */
export async function libvirtBackupTlsDir(): Promise<string> {
  const conf = await readFile(QEMU_CONF, "utf8").catch(() => "");
  return (
    confValue(conf, "backup_tls_x509_cert_dir") ??
    (existsSync("/etc/pki/libvirt-backup") ? "/etc/pki/libvirt-backup" : null) ??
    confValue(conf, "default_tls_x509_cert_dir") ??
    "/etc/pki/qemu"
  );
}


interface MarkerData {
  pid: number;
  files: string[];
  dirs: string[];
}

async function undoInstall(m: MarkerData, markerPath: string): Promise<void> {
  for (const f of m.files) await rm(f, { force: true });
  await rm(markerPath, { force: true });
  for (const d of [...m.dirs].reverse()) await rmdir(d).catch(() => undefined);
}

/**
 * A test CA whose server certificate (SAN: `names`) is installed into libvirt's backup TLS dir,
 * readable by qemu; resolves with a directory holding the same CA's client pair (the --tls-cert
 * dir for our tools) — or null when the directory already holds certificates (never clobbered)
 * or another live test run uses it. Everything installed here is removed by t.after; a leftover
 * of a killed test run (its marker names a dead pid) is removed first.
 */
export async function installLibvirtBackupCerts(t: After, names: string[]): Promise<{ clientDir: string; serverDir: string } | null> {
  const serverDir = await libvirtBackupTlsDir();
  const markerPath = join(serverDir, MARKER);
  const old = await readFile(markerPath, "utf8").catch(() => null);
  if (old !== null) {
    const m = JSON.parse(old) as MarkerData;
    if (pidAlive(m.pid)) return null;
    await undoInstall(m, markerPath);
  }
  if (SERVER_FILES.some((f) => existsSync(join(serverDir, f)))) return null;
  const clientDir = await makeTlsCerts(t as After & { after(fn: () => Promise<void>): void }, names);
  const created: string[] = [];
  for (let d = serverDir; !existsSync(d); d = dirname(d)) created.unshift(d);
  const marker: MarkerData = { pid: process.pid, files: SERVER_FILES.map((f) => join(serverDir, f)), dirs: created };
  for (const d of created) await mkdir(d, { mode: 0o755 });
  await writeFile(markerPath, JSON.stringify(marker));
  t.after(() => undoInstall(marker, markerPath));
  // qemu runs as libvirt-qemu (group kvm on Debian): the key must be readable by that group.
  const qemuGid = await execFileP("id", ["-g", "libvirt-qemu"]).then((r) => Number(r.stdout.trim())).catch(() => null);
  for (const f of SERVER_FILES) {
    const to = join(serverDir, f);
    await copyFile(join(clientDir, f), to);
    if (f.endsWith("-key.pem") && qemuGid !== null) {
      await chown(to, 0, qemuGid);
      await chmod(to, 0o640);
    } else {
      await chmod(to, 0o644);
    }
  }
  return { clientDir, serverDir };
}

// ------------------------------------------------------------ network namespaces

export interface Netns {
  name: string;
  /** Address of the host end of the veth pair (the "hypervisor" side). */
  hostAddress: string;
  /** Address inside the namespace (where our tool runs). */
  nsAddress: string;
  /** Bytes received so far on the namespace end of the veth pair (what crossed into it). */
  rxBytes(): Promise<number>;
  /** Runs a command inside the namespace. */
  exec(cmd: string, args: string[]): Promise<string>;
}

async function ip(args: string[]): Promise<string> {
  const { stdout } = await execFileP("ip", args);
  return stdout;
}

/** Removes namespaces and veth pairs of test processes that are gone. */
async function sweepStaleNetns(): Promise<void> {
  const list = await ip(["netns", "list"]).catch(() => "");
  for (const line of list.split("\n")) {
    const m = /^(vnbt-(\d+)-\w+)/.exec(line.trim());
    if (m && !pidAlive(Number(m[2]))) await ip(["netns", "del", m[1]!]).catch(() => "");
  }
}

/**
 * A network namespace joined to this one by a veth pair (10.213.x.1 here, 10.213.x.2 inside).
 * Resolves null when namespaces cannot be made (no privileges, no kernel support).
 */
export async function createNetns(t: After): Promise<Netns | null> {
  await sweepStaleNetns();
  const tag = Math.floor(Math.random() * 0xffff).toString(16);
  const name = `vnbt-${process.pid}-${tag}`;
  const hostIf = `vnbth${tag}`;
  const nsIf = `vnbtn${tag}`;
  const subnet = 4 * Math.floor(Math.random() * 60);
  const x = 1 + Math.floor(Math.random() * 250);
  const hostAddress = `10.213.${x}.${subnet + 1}`;
  const nsAddress = `10.213.${x}.${subnet + 2}`;
  try {
    await ip(["netns", "add", name]);
  } catch {
    return null;
  }
  t.after(async () => {
    await ip(["netns", "del", name]).catch(() => "");
    await ip(["link", "del", hostIf]).catch(() => "");
  });
  await ip(["link", "add", hostIf, "type", "veth", "peer", "name", nsIf]);
  await ip(["link", "set", nsIf, "netns", name]);
  await ip(["addr", "add", `${hostAddress}/30`, "dev", hostIf]);
  await ip(["link", "set", hostIf, "up"]);
  await ip(["-n", name, "addr", "add", `${nsAddress}/30`, "dev", nsIf]);
  await ip(["-n", name, "link", "set", nsIf, "up"]);
  await ip(["-n", name, "link", "set", "lo", "up"]);
  return {
    name,
    hostAddress,
    nsAddress,
    exec: async (cmd, args) => (await execFileP("ip", ["netns", "exec", name, cmd, ...args])).stdout,
    rxBytes: async () => {
      const [link] = JSON.parse(await ip(["-n", name, "-s", "-j", "link", "show", nsIf])) as { stats64: { rx: { bytes: number } } }[];
      return link!.stats64.rx.bytes;
    },
  };
}
