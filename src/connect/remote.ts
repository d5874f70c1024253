/**
 * Remote mode (docs/behaviour.md, "Remote mode"), shared by virtnbdbackup and virtnbdrestore: a `qemu+ssh` URI
 * means the disks live on another machine. Files and qemu tools are reached through one ssh
 * connection (src/host/ssh.ts); the disk data goes over NBD on TCP (optionally TLS) to
 * `--nbd-ip`, or to the host name the remote libvirt reports.
 *
 * The ssh login: host from the URI; user `--ssh-user` when given, else the URI's user, else the
 * login name (`--ssh-user`'s default); port `--ssh-port` when given, else the URI's port, else 22;
 * key `--ssh-private-key`, else the URI's `keyfile=` parameter, else agent and default keys.
 */
import { SshHost, type SshTarget } from "../host/ssh.js";
import type { Connection } from "../libvirt/connection.js";
import { loadClientCredentials, type ClientTlsOptions } from "../nbd/index.js";
import type { GivenOptions } from "../util/given-options.js";
import type { NbdPortPool, NbdPorts } from "./nbd-ports.js";
import { oneLine } from "../util/one-line.js";

/** `given`: `--ssh-user` and `--ssh-port` override the URI's only when typed. */
export interface RemoteOptions extends GivenOptions {
  uri: string;
  sshUser: string | null;
  sshPort: number;
  sshPrivateKey: string | null;
  /** `-P`: one port, or a range / auto to pick a free one from (./nbd-ports.ts). */
  nbdPorts: NbdPorts;
  nbdIp: string;
  tls: boolean;
  tlsCert: string;
}

/** qemu-nbd on the remote hypervisor (offline backup, restore), reached by our client over TCP. */
export interface RemoteNbd {
  /** `-P`: the ports the run's qemu-nbd servers take (./nbd-ports.ts). */
  ports: NbdPortPool;
  /** Which server of the run this is: with a single `-P N`, its port is `N + index`. */
  index: number;
  /** `-b`: only with --nbd-ip. */
  bind?: string;
  connectHost: string;
  /** `--tls`: certificate directory of qemu-nbd on the remote host. */
  tlsDir?: string;
  tls: ClientTlsOptions | null;
}

interface InfoLog {
  info(m: string): void;
  debug(m: string): void;
}

/** The original's trigger: the substring `qemu+ssh` anywhere in the URI. */
export function isRemoteUri(uri: string): boolean {
  return uri.includes("qemu+ssh");
}

/** Where to log in with ssh for this URI and these options. */
export function sshTargetFor(o: RemoteOptions): SshTarget {
  const given = o.given;
  let url: URL | null = null;
  try {
    url = new URL(o.uri);
  } catch {
    url = null;
  }
  const uriHost = url?.hostname.replace(/^\[(.*)\]$/, "$1") ?? "";
  const uriUser = url?.username ? decodeURIComponent(url.username) : "";
  const uriPort = url?.port ? Number(url.port) : null;
  const uriKey = url?.searchParams.get("keyfile") ?? null;
  const user = (given.has("ssh_user") ? o.sshUser : null) || uriUser || o.sshUser || "root";
  const port = given.has("ssh_port") ? o.sshPort : (uriPort ?? o.sshPort);
  return { host: uriHost || "localhost", user, port, keyFile: o.sshPrivateKey ?? uriKey };
}

/** Logs in with ssh, logging the original's line. Rejects with ssh's reason. */
export async function openSshHost(target: SshTarget, log: InfoLog): Promise<SshHost> {
  log.info(`Connecting remote system [${target.host}] via ssh, username: [${target.user}]`);
  const host = await SshHost.connect(target);
  log.debug(`ssh connection to [${target.user}@${target.host}:${target.port}] established (one multiplexed connection for this run).`);
  return host;
}

/** The error line for a failed ssh login (`what`: "backup" or "restore"). */
export function sshFailureLine(what: "backup" | "restore", e: unknown): string {
  return `Remote ${what} detected but ssh session setup failed: [${oneLine((e as Error).message)}]`;
}

/** Where the NBD traffic goes: `--nbd-ip`, else the host name the remote libvirt reports. */
export async function nbdHostFor(o: RemoteOptions, conn: Connection | null, fallback: string): Promise<string> {
  if (o.nbdIp) return o.nbdIp;
  if (conn) {
    try {
      return await conn.hostname();
    } catch {
      /* fall through */
    }
  }
  return fallback;
}

/** Client side of `--tls`: CA (and the client pair, when present) from `--tls-cert`. */
export function clientTls(o: RemoteOptions): ClientTlsOptions | null {
  return o.tls ? { certDir: o.tlsCert } : null;
}

/**
 * `--tls`: the client's certificates must be readable before anything starts (a job would
 * otherwise be started and aborted). Returns the error line, or null.
 */
export function checkClientTls(o: RemoteOptions): string | null {
  if (!o.tls) return null;
  try {
    loadClientCredentials({ certDir: o.tlsCert });
    return null;
  } catch (e) {
    return `Unable to use the TLS certificates in [${o.tlsCert}] (--tls-cert): ${oneLine((e as Error).message)}`;
  }
}

/** `--tls`: the certificate directory qemu-nbd started by us uses on the remote host. */
export function serverTlsDir(o: RemoteOptions): string | undefined {
  return o.tls ? o.tlsCert : undefined;
}
