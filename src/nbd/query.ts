/** Handshake-only queries: NBD_OPT_LIST and NBD_OPT_LIST_META_CONTEXT, ending with NBD_OPT_ABORT. */
import { ClientHandshake } from "./handshake.js";
import type { ClientTlsOptions } from "./tls.js";
import { Transport } from "./transport.js";
import type { NbdTarget } from "./uri.js";

export interface QueryOptions {
  target: NbdTarget;
  tls?: ClientTlsOptions | null;
  connectTimeoutMs?: number;
}

async function withHandshake<T>(opts: QueryOptions, fn: (hs: ClientHandshake) => Promise<T>): Promise<T> {
  const t = await Transport.connect(opts.target, { zeroCopy: false, connectTimeoutMs: opts.connectTimeoutMs ?? 30000 });
  try {
    const hs = new ClientHandshake(t);
    await hs.greet();
    if (opts.tls) await hs.startTls(opts.tls);
    const out = await fn(hs);
    await hs.abort();
    return out;
  } finally {
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
