/**
 * NBD over TCP to a remote hypervisor (docs/behaviour.md, "NBD connection", "Remote mode"). A server that is not listening yet
 * (connection refused) gets the original's wait loop; an address that does not answer
 * (firewalled, wrong `--nbd-ip`, no route) and TLS failures end the attempt at once with one
 * line that says what is wrong, instead of twenty silent retries.
 */
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import {
  formatNbdUri,
  NbdClient,
  NbdConnectAborted,
  NbdConnectionError,
  NbdConnectionTimeout,
  resolveConnectOptions,
  type ConnectOptions,
  type NbdTarget,
} from "../nbd/index.js";

/** One TCP connect attempt may take this long (SYNs dropped by a firewall). */
export const TCP_CONNECT_TIMEOUT_MS = 10_000;

/** Negotiation with a qemu-nbd we started over TCP must not take longer than this. */
export const TCP_HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * Export name for a qemu-nbd we start on a TCP port: the disk name plus a random tag, so that a
 * client that reaches another run's qemu-nbd on the same port (a port collision) fails with
 * "unknown export" instead of reading or writing the wrong image.
 */
export function uniqueExportName(disk: string): string {
  return `${disk}.${randomBytes(4).toString("hex")}`;
}

export class NbdUnreachableError extends Error {}
export class NbdTlsError extends Error {}

const CERT_CODES = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_SIGNATURE_FAILURE",
  "CERT_REVOKED",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "INVALID_CA",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

function codeOf(e: unknown): string {
  const c = (e as { code?: unknown } | null)?.code;
  return typeof c === "string" ? c : "";
}

/** True for errors of a TLS handshake (certificate checks, alerts, protocol). */
export function isTlsError(e: unknown): boolean {
  const code = codeOf(e);
  if (CERT_CODES.has(code) || /^ERR_(SSL|TLS)_/.test(code)) return true;
  return (e as { library?: unknown } | null)?.library === "SSL routines";
}

/**
 * A definite connect failure explained in one line, or null when the error means "not listening
 * yet" or is something else (handshake errors keep their own message).
 */
export function explainConnectError(e: unknown, uri: string, certDir: string | null): Error | null {
  const code = codeOf(e);
  const msg = (e as Error | null)?.message ?? String(e);
  if (e instanceof NbdConnectionError && /^Timeout connecting/.test(msg)) {
    return new NbdUnreachableError(
      `NBD server [${uri}] not reachable: no answer within ${TCP_CONNECT_TIMEOUT_MS / 1000} s (port filtered by a firewall, or wrong --nbd-ip?)`,
    );
  }
  if (code === "EHOSTUNREACH" || code === "ENETUNREACH" || code === "EADDRNOTAVAIL") {
    return new NbdUnreachableError(`NBD server [${uri}] not reachable: ${msg}`);
  }
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") {
    return new NbdUnreachableError(`NBD server [${uri}]: unable to resolve the host name: ${msg} (use --nbd-ip)`);
  }
  if (isTlsError(e)) {
    const from = certDir ? ` (CA and client certificate from [${certDir}]: ca-cert.pem, client-cert.pem, client-key.pem)` : "";
    return new NbdTlsError(`TLS handshake with NBD server [${uri}] failed: ${msg}${from}`);
  }
  return null;
}

export type TcpConnectOptions = Omit<ConnectOptions, "uri" | "target"> & { target: Extract<NbdTarget, { kind: "tcp" }> };

/**
 * Connects like the original (first attempt at once, then up to 19 more 1 s apart) while the
 * server refuses connections; anything else fails at once.
 */
export async function connectTcp(opts: TcpConnectOptions): Promise<NbdClient> {
  const co = resolveConnectOptions({ connectTimeoutMs: TCP_CONNECT_TIMEOUT_MS, ...opts });
  const attempts = opts.attempts ?? 20;
  const interval = opts.intervalMs ?? 1000;
  const log = opts.log ?? (() => undefined);
  const uri = formatNbdUri(co.target, co.exportName, !!co.tls);
  const certDir = co.tls?.certDir ?? null;
  log("info", `Waiting until NBD server at [${uri}] is up.`);
  let lastError: unknown = null;
  for (let retry = 0; retry < attempts; retry++) {
    if (retry > 0) await sleep(interval, undefined, { signal: opts.signal }).catch(() => undefined);
    if (opts.signal?.aborted) throw new NbdConnectAborted();
    try {
      const client = await NbdClient.open(co);
      log("info", "Connection to NBD backend succeeded.");
      log("debug", `NBD connections to [${uri}]: [${client.connections.length}]`);
      return client;
    } catch (e) {
      const explained = explainConnectError(e, uri, certDir);
      if (explained) throw explained;
      if (codeOf(e) !== "ECONNREFUSED") throw e;
      lastError = e;
      log("info", `Waiting for NBD Server, Retry: ${retry}`);
    }
  }
  const last = lastError ? ` (last error: ${(lastError as Error).message})` : "";
  throw new NbdConnectionTimeout(`NBD server [${uri}]: Timeout during connection to NBD server backend.${last}`, lastError);
}
