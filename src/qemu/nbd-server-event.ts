/** The `nbd-server` event (docs/events.md) of a qemu-nbd we started: where our client reaches it. */
import type { NbdTarget } from "../nbd/index.js";
import type { NbdServerFields } from "../report/events.js";

export function qemuNbdServerEvent(target: NbdTarget, exportName: string, tls: boolean, disk: string): NbdServerFields {
  const where = target.kind === "unix" ? { transport: "unix" as const, socket: target.path } : { transport: "tcp" as const, host: target.host, port: target.port };
  return { server: "qemu-nbd", ...where, exports: [exportName], tls, disk };
}
