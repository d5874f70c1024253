/** Handshake-only queries: NBD_OPT_LIST and NBD_OPT_LIST_META_CONTEXT, ending with NBD_OPT_ABORT. */
import { ClientHandshake, type BasicInfo } from "./handshake.js";
import type { ClientTlsOptions } from "./tls.js";
import { Transport } from "./transport.js";
import { describeTarget, type NbdTarget } from "./uri.js";
import { NbdHandshakeError } from "./errors.js";

export interface QueryOptions {
  target: NbdTarget;
  tls?: ClientTlsOptions | null;
  connectTimeoutMs?: number;
  /** Give up when the server does not answer within this many ms (default 30000). */
  handshakeTimeoutMs?: number;
}

async function withHandshake<T>(opts: QueryOptions, fn: (hs: ClientHandshake) => Promise<T>): Promise<T> {
  const t = await Transport.connect(opts.target, { zeroCopy: false, connectTimeoutMs: opts.connectTimeoutMs ?? 30000 });
  const limit = opts.handshakeTimeoutMs ?? 30000;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    t.destroy();
  }, limit);
  try {
    const hs = new ClientHandshake(t);
    await hs.greet();
    if (opts.tls) await hs.startTls(opts.tls);
    const out = await fn(hs);
    await hs.abort();
    return out;
  } catch (e) {
    if (timedOut) throw new NbdHandshakeError(`NBD server at ${describeTarget(opts.target)} did not answer within ${limit} ms`);
    throw e;
  } finally {
    clearTimeout(timer);
    t.destroy();
  }
}

/** Export names (and descriptions) the server lists. */
export function listExports(opts: QueryOptions): Promise<{ name: string; description: string }[]> {
  return withHandshake(opts, (hs) => hs.listExports());
}

/** Meta context names the server offers for an export (all of them when `queries` is empty). */
export function listMetaContexts(opts: QueryOptions & { exportName: string; queries?: readonly string[] }): Promise<string[]> {
  return withHandshake(opts, async (hs) => {
    if (!(await hs.structuredReplies())) return [];
    return hs.listMetaContexts(opts.exportName, opts.queries ?? []);
  });
}

/** NBD_OPT_INFO: size, flags, block sizes and description of an export, without opening it. */
export function queryExportInfo(opts: QueryOptions & { exportName: string }): Promise<BasicInfo> {
  return withHandshake(opts, (hs) => hs.info(opts.exportName));
}
