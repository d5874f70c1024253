/** The `nbd-server` event of a backup's libvirt job (docs/events.md). */
import type { BackupServer } from "../libvirt/backup-xml.js";
import type { NbdServerFields } from "../report/events.js";

/** libvirt's backup job: the server element it was started with (so the port is the one in use). */
export function jobServerEvent(server: BackupServer, exports: string[]): NbdServerFields {
  if ("transport" in server) return { server: "libvirt-backup-job", transport: "unix", socket: server.socket, exports, tls: false };
  return { server: "libvirt-backup-job", transport: "tcp", host: server.name, port: Number(server.port), exports, tls: server.tls };
}
