/**
 * NBD URIs as used by upstream and libnbd: `nbd+unix:///<export>?socket=<path>`,
 * `nbd://host[:port]/<export>`, `nbds://…` (TLS), `nbds+unix://…`. IPv6 hosts in brackets.
 */

export const DEFAULT_NBD_PORT = 10809;

export type NbdTarget = { kind: "unix"; path: string } | { kind: "tcp"; host: string; port: number };

export interface NbdUri {
  target: NbdTarget;
  exportName: string;
  /** `nbds…` scheme: TLS required. */
  tls: boolean;
  /** Extra query parameters (`tls-certificates`, `tls-hostname`, …), percent-decoded. */
  query: Record<string, string>;
}

export class NbdUriError extends Error {
  constructor(uri: string, reason: string) {
    super(`Invalid NBD URI [${uri}]: ${reason}`);
    this.name = "NbdUriError";
  }
}

function decode(uri: string, s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new NbdUriError(uri, `bad percent-encoding in "${s}"`);
  }
}

export function parseNbdUri(uri: string): NbdUri {
  const m = /^(nbds?)(\+unix|\+tcp)?:\/\/([^/?#]*)([^?#]*)(?:\?([^#]*))?(?:#.*)?$/i.exec(uri);
  if (!m) throw new NbdUriError(uri, "expected nbd://, nbds://, nbd+unix:// or nbds+unix://");
  const tls = m[1]!.toLowerCase() === "nbds";
  const transport = (m[2] ?? "+tcp").toLowerCase();
  const authority = m[3]!;
  const path = m[4]!;
  const query: Record<string, string> = {};
  if (m[5]) {
    for (const part of m[5].split("&")) {
      if (!part) continue;
      const eq = part.indexOf("=");
      const k = decode(uri, eq < 0 ? part : part.slice(0, eq));
      query[k] = decode(uri, eq < 0 ? "" : part.slice(eq + 1));
    }
  }
  const exportName = decode(uri, path.startsWith("/") ? path.slice(1) : path);
  if (transport === "+unix") {
    if (authority !== "") throw new NbdUriError(uri, "a unix socket URI has no host");
    const socket = query["socket"];
    if (!socket) throw new NbdUriError(uri, "missing ?socket=<path>");
    delete query["socket"];
    return { target: { kind: "unix", path: socket }, exportName, tls, query };
  }
  let host: string;
  let portText: string | undefined;
  const v6 = /^\[([^\]]+)\](?::(\d*))?$/.exec(authority);
  if (v6) {
    host = v6[1]!;
    portText = v6[2];
  } else {
    const c = authority.lastIndexOf(":");
    host = c < 0 ? authority : authority.slice(0, c);
    portText = c < 0 ? undefined : authority.slice(c + 1);
  }
  if (!host) host = "localhost";
  let port = DEFAULT_NBD_PORT;
  if (portText) {
    if (!/^\d+$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
      throw new NbdUriError(uri, `bad port "${portText}"`);
    }
    port = Number(portText);
  }
  return { target: { kind: "tcp", host: decode(uri, host), port }, exportName, tls, query };
}

function encodeExport(name: string): string {
  return name
    .split("/")
    .map((p) => encodeURIComponent(p))
    .join("/");
}

/** Formats a URI the way upstream logs it (`nbd+unix:///sda?socket=/var/tmp/x`). */
export function formatNbdUri(target: NbdTarget, exportName: string, tls = false): string {
  const scheme = tls ? "nbds" : "nbd";
  if (target.kind === "unix") return `${scheme}+unix:///${encodeExport(exportName)}?socket=${target.path}`;
  const host = target.host.includes(":") ? `[${target.host}]` : target.host;
  return `${scheme}://${host}:${target.port}/${encodeExport(exportName)}`;
}

export function describeTarget(target: NbdTarget): string {
  return target.kind === "unix" ? `unix socket ${target.path}` : `${target.host}:${target.port}`;
}
