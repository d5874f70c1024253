/**
 * What backup and restore connect to: libvirt, and the hypervisor host whose files and qemu
 * tools a run uses (this machine, or over ssh for a `qemu+ssh` URI, with the host the NBD
 * traffic goes to).
 */
import type { Host } from "../host/host.js";
import { withCommandLog } from "../host/command-log.js";
import { LocalHost } from "../host/local.js";
import { Connection } from "../libvirt/connection.js";
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
 * The hypervisor host of a run: this machine, or (`qemu+ssh` URI) one ssh connection to it
 * after the `--tls` client certificates were found readable. Throws SessionError.
 */
export async function openHypervisor(
  o: RemoteOptions,
  conn: Connection | null,
  what: "backup" | "restore",
  log: { info(m: string): void; debug(m: string): void },
): Promise<Hypervisor> {
  const logged = <H extends Host>(h: H) => withCommandLog(h, (m) => log.debug(m));
  if (!isRemoteUri(o.uri)) return { host: logged(new LocalHost()), nbdHost: null };
  const tlsProblem = checkClientTls(o);
  if (tlsProblem) throw new SessionError(tlsProblem);
  let host: Host;
  try {
    host = logged(await openSshHost(sshTargetFor(o), log));
  } catch (e) {
    throw new SessionError(sshFailureLine(what, e));
  }
  return { host, nbdHost: await nbdHostFor(o, conn, host.name) };
}
