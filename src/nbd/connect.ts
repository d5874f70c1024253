/**
 * Connecting like upstream: wait until the server is reachable (for unix sockets, until the
 * socket file exists), up to `attempts` tries, retries `intervalMs` apart, then
 * `NbdConnectionTimeout("Timeout during connection to NBD server backend.")`.
 *
 * Only "not there yet" failures are retried (missing socket, refused/reset connection, the
 * server closing during negotiation). Definite answers (unknown export, TLS refused or
 * failing, protocol errors) are thrown at once.
 */
import { existsSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { NbdClient, type ClientOptions } from "./client.js";
import { NbdConnectAborted, NbdConnectionError, NbdConnectionTimeout } from "./errors.js";
import type { ClientTlsOptions } from "./tls.js";
import { formatNbdUri, parseNbdUri, type NbdTarget } from "./uri.js";

export interface ConnectOptions extends Omit<ClientOptions, "target" | "exportName" | "tls"> {
  /** `nbd+unix:///sda?socket=…`, `nbd://host:port/sda`, `nbds://…`. Alternatively `target`. */
  uri?: string;
  target?: NbdTarget;
  /** Overrides the URI's export name. */
  exportName?: string;
  /** TLS credentials; required (TLS mandatory) for `nbds` URIs, or pass them to force TLS. */
  tls?: ClientTlsOptions | null;
  /** Attempts before giving up (default 20). */
  attempts?: number;
  /** Sleep before each attempt in ms (default 1000). */
  intervalMs?: number;
  /** Progress messages in upstream's wording. */
  log?: (level: "info" | "debug", message: string) => void;
}

const RETRYABLE_CODES = new Set(["ENOENT", "ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EAGAIN", "EHOSTUNREACH", "ENETUNREACH"]);

function retryable(e: unknown): boolean {
  if (e instanceof NbdConnectionError) return true;
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" && RETRYABLE_CODES.has(code);
}

export function resolveConnectOptions(opts: ConnectOptions): ClientOptions {
  let target = opts.target;
  let exportName = opts.exportName;
  let tls = opts.tls ?? null;
  if (opts.uri) {
    const u = parseNbdUri(opts.uri);
    target ??= u.target;
    exportName ??= u.exportName;
    if (u.tls && !tls) {
      const certDir = u.query["tls-certificates"];
      if (!certDir) throw new Error(`TLS URI [${opts.uri}] needs TLS credentials (tls option or ?tls-certificates=<dir>)`);
      tls = { certDir };
    }
    if (tls && u.query["tls-hostname"]) tls = { ...tls, hostname: u.query["tls-hostname"] };
  }
  if (!target) throw new Error("NBD connect: no uri or target given");
  const { uri: _u, attempts: _a, intervalMs: _i, log: _l, target: _t, exportName: _e, tls: _tls, ...rest } = opts;
  return { ...rest, target, exportName: exportName ?? "", tls };
}

/** Connects with upstream's wait-and-retry loop. */
export async function connect(opts: ConnectOptions): Promise<NbdClient> {
  const co = resolveConnectOptions(opts);
  const attempts = opts.attempts ?? 20;
  const interval = opts.intervalMs ?? 1000;
  const log = opts.log ?? (() => {});
  const uri = formatNbdUri(co.target, co.exportName, !!co.tls);
  log("info", `Waiting until NBD server at [${uri}] is up.`);
  let lastError: unknown = null;
  for (let retry = 0; retry < attempts; retry++) {
    // The first attempt goes out at once (the server is usually up); retries wait.
    if (retry > 0) await sleep(interval, undefined, { signal: opts.signal }).catch(() => undefined);
    if (opts.signal?.aborted) throw new NbdConnectAborted();
    if (co.target.kind === "unix" && !existsSync(co.target.path)) {
      log("info", `Waiting for NBD Server, Retry: ${retry}`);
      continue;
    }
    try {
      const client = await NbdClient.open(co);
      log("info", "Connection to NBD backend succeeded.");
      return client;
    } catch (e) {
      if (!retryable(e)) throw e;
      lastError = e;
      log("debug", `NBD connection attempt failed: ${(e as Error).message}`);
      log("info", `Waiting for NBD Server, Retry: ${retry}`);
    }
  }
  throw new NbdConnectionTimeout(undefined, lastError);
}
