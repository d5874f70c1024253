/**
 * x509 credentials in qemu's directory layout (`tls-creds-x509,dir=…`):
 * `ca-cert.pem`, `ca-crl.pem` (optional), `server-cert.pem`, `server-key.pem`,
 * `client-cert.pem`, `client-key.pem`.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import tls from "node:tls";
import { NbdConnectionError } from "./errors.js";

export interface ClientTlsOptions {
  /** qemu-layout directory; `ca-cert.pem` is required, the client pair is used when present. */
  certDir?: string;
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Name to check the server certificate against (defaults to the TCP host). */
  hostname?: string;
  /**
   * Check the certificate's name against `hostname`. Default: true when a name is known (TCP
   * host or explicit `hostname`), false for unix sockets (the chain is always verified
   * against the CA).
   */
  verifyHostname?: boolean;
}

export interface ServerTlsOptions {
  /** qemu-layout directory with `server-cert.pem`, `server-key.pem` and (for client verification) `ca-cert.pem`. */
  certDir?: string;
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Require and verify a client certificate (qemu's verify-peer). Default false. */
  verifyPeer?: boolean;
}

export class TlsConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TlsConfigError";
  }
}

function readPem(dir: string, name: string, required: boolean): Buffer | undefined {
  const p = join(dir, name);
  if (!existsSync(p)) {
    if (required) throw new TlsConfigError(`TLS certificate file not found: [${p}]`);
    return undefined;
  }
  try {
    return readFileSync(p);
  } catch (e) {
    throw new TlsConfigError(`Unable to read TLS file [${p}]: ${(e as Error).message}`);
  }
}

export interface ClientCredentials {
  ca: Buffer | string;
  crl?: Buffer;
  cert?: Buffer | string;
  key?: Buffer | string;
}

export function loadClientCredentials(opts: ClientTlsOptions): ClientCredentials {
  const dir = opts.certDir;
  const ca = opts.ca ?? (dir ? readPem(dir, "ca-cert.pem", true) : undefined);
  if (!ca) throw new TlsConfigError("TLS needs a CA certificate (certDir with ca-cert.pem, or ca)");
  const crl = dir ? readPem(dir, "ca-crl.pem", false) : undefined;
  let cert = opts.cert ?? (dir ? readPem(dir, "client-cert.pem", false) : undefined);
  let key = opts.key ?? (dir ? readPem(dir, "client-key.pem", false) : undefined);
  if ((cert === undefined) !== (key === undefined)) {
    if (opts.cert !== undefined || opts.key !== undefined) {
      throw new TlsConfigError("TLS client certificate and key must be given together");
    }
    cert = undefined;
    key = undefined;
  }
  const out: ClientCredentials = { ca };
  if (crl) out.crl = crl;
  if (cert !== undefined && key !== undefined) {
    out.cert = cert;
    out.key = key;
  }
  return out;
}

export function loadServerContext(opts: ServerTlsOptions): tls.SecureContext {
  const dir = opts.certDir;
  const cert = opts.cert ?? (dir ? readPem(dir, "server-cert.pem", true) : undefined);
  const key = opts.key ?? (dir ? readPem(dir, "server-key.pem", true) : undefined);
  if (!cert || !key) throw new TlsConfigError("TLS server needs server-cert.pem and server-key.pem");
  const ca = opts.ca ?? (dir ? readPem(dir, "ca-cert.pem", opts.verifyPeer === true) : undefined);
  const crl = dir ? readPem(dir, "ca-crl.pem", false) : undefined;
  const ctxOpts: tls.SecureContextOptions = { cert, key, minVersion: "TLSv1.2" };
  if (ca) ctxOpts.ca = ca;
  if (crl) ctxOpts.crl = crl;
  return tls.createSecureContext(ctxOpts);
}

/** Upgrades a connected plain socket to TLS as the client; resolves once the handshake is done. */
export function startClientTls(
  socket: import("node:net").Socket,
  opts: ClientTlsOptions,
  defaultHost: string | undefined,
): Promise<tls.TLSSocket> {
  const creds = loadClientCredentials(opts);
  const hostname = opts.hostname ?? defaultHost;
  const verifyHostname = opts.verifyHostname ?? hostname !== undefined;
  return new Promise((resolve, reject) => {
    const connOpts: tls.ConnectionOptions = {
      socket,
      ca: creds.ca,
      minVersion: "TLSv1.2",
      rejectUnauthorized: true,
      checkServerIdentity: verifyHostname
        ? (host, cert) => tls.checkServerIdentity(host, cert)
        : () => undefined,
    };
    if (creds.crl) connOpts.crl = creds.crl;
    if (creds.cert !== undefined) connOpts.cert = creds.cert;
    if (creds.key !== undefined) connOpts.key = creds.key;
    if (hostname && !/^[\d.]+$/.test(hostname) && !hostname.includes(":")) connOpts.servername = hostname;
    if (hostname) connOpts.host = hostname;
    const s = tls.connect(connOpts);
    const settle = (): void => {
      s.off("error", onError);
      s.off("close", onClose);
      socket.off("close", onClose);
    };
    const onError = (e: Error): void => {
      settle();
      s.destroy();
      reject(e);
    };
    // The socket closed under the handshake (the caller gave up on it: an abort, a timeout):
    // no error event comes then, and the caller must not wait forever.
    const onClose = (): void => {
      settle();
      s.destroy();
      reject(new NbdConnectionError("connection closed during the TLS handshake"));
    };
    s.once("error", onError);
    s.once("close", onClose);
    socket.once("close", onClose);
    s.once("secureConnect", () => {
      settle();
      resolve(s);
    });
  });
}
