/**
 * What backup and restore connect to: libvirt, and the hypervisor host whose files and qemu
 * tools a run uses (this machine, or over ssh for a `qemu+ssh` URI, with the host the NBD
 * traffic goes to).
 */
import type { Host } from "../host/host.js";
import type { SshHost } from "../host/ssh.js";
import { withCommandLog } from "../host/command-log.js";
import { LocalHost } from "../host/local.js";
import { Connection } from "../libvirt/connection.js";
import { awaitLater } from "../util/in-flight.js";
import { checkClientTls, isRemoteUri, nbdHostFor, openSshHost, sshFailureLine, sshTargetFor, type RemoteOptions } from "./remote.js";

/** A failure to connect, as the one line the user sees. */
export class SessionError extends Error {}

export interface LibvirtLogin {
  uri: string;
  user: string | null;
  password: string | null;
}

/** Opens libvirt; `--user` and `--password` (both) answer a SASL login. */
export function openLibvirt(o: LibvirtLogin): Promise<Connection> {
  return Connection.open(o.uri, o.user && o.password ? { user: o.user, password: o.password } : {});
}

export interface Hypervisor {
  host: Host;
  /** Remote: where the NBD traffic goes (`--nbd-ip` or the remote host name); null: local. */
  nbdHost: string | null;
}

/**
 * Remote: the ssh login, started at once so that it runs beside the libvirt login (on a slow
 * link each waits a dozen round trips; one after the other they cost twice that). Null when
 * local, or when the `--tls` certificates are unreadable (`openHypervisor` says so). The caller
 * passes it to `openHypervisor`, or `dropSshLogin`s it when the libvirt login failed.
 */
export function startSshLogin(o: RemoteOptions, log: { info(m: string): void; debug(m: string): void }): Promise<SshHost> | null {
  if (!isRemoteUri(o.uri) || checkClientTls(o) !== null) return null;
  const login = openSshHost(sshTargetFor(o), log);
  login.catch(() => undefined); // observed by openHypervisor or dropSshLogin
  return login;
}

/** An ssh login that is not needed after all (the libvirt login failed): closed once it is up. */
export async function dropSshLogin(login: Promise<SshHost> | null): Promise<void> {
  const host = await login?.catch(() => null);
  await host?.close().catch(() => undefined);
}

/**
 * The hypervisor host of a run: this machine, or (`qemu+ssh` URI) one ssh connection to it
 * after the `--tls` client certificates were found readable (`login`: already started by
 * `startSshLogin`). Throws SessionError.
 */
export async function openHypervisor(
  o: RemoteOptions,
  conn: Connection | null,
  what: "backup" | "restore",
  log: { info(m: string): void; debug(m: string): void },
  login: Promise<SshHost> | null = null,
): Promise<Hypervisor> {
  const logged = <H extends Host>(h: H) => withCommandLog(h, (m) => log.debug(m));
  if (!isRemoteUri(o.uri)) return { host: logged(new LocalHost()), nbdHost: null };
  const tlsProblem = checkClientTls(o);
  if (tlsProblem) throw new SessionError(tlsProblem);
  const target = sshTargetFor(o);
  // libvirt's host name is asked while the ssh login finishes (a round trip each on a slow link).
  const nbdHost = awaitLater(nbdHostFor(o, conn, target.host));
  let host: Host;
  try {
    host = logged(await (login ?? openSshHost(target, log)));
  } catch (e) {
    throw new SessionError(sshFailureLine(what, e));
  }
  return { host, nbdHost: await nbdHost };
}
