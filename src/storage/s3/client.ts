/**
 * The S3 client of a process (`@aws-sdk/client-s3`, loaded only when a path is `s3://…`: the
 * bundles keep their start-up time). Endpoint: `--s3-endpoint`, else the SDK's own
 * `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, else AWS. Region and credentials: the SDK's
 * usual chain (environment, `~/.aws/config` and `credentials`, `AWS_PROFILE`); a region
 * nobody set is `us-east-1` (RGW ignores it). A custom endpoint gets path-style addressing
 * (`http://host/bucket/key`), which RGW and other S3-compatible servers accept without DNS
 * names per bucket. Integrity is ours (Content-MD5 on every part and object, docs/s3.md), so
 * the SDK sends no checksum headers of its own: older servers (Ceph 16) refuse its streamed
 * aws-chunked bodies (411) and do not check the others.
 */
import type * as Sdk from "@aws-sdk/client-s3";

export type S3Sdk = typeof Sdk;

export interface S3Settings {
  endpoint: string | null;
}

const settings: S3Settings = { endpoint: null };
let loaded: Promise<{ sdk: S3Sdk; client: Sdk.S3Client }> | null = null;

/** `--s3-endpoint` (before the first request). */
export function setS3Endpoint(endpoint: string | null): void {
  settings.endpoint = endpoint;
  loaded = null;
}

function configuredEndpoint(): string | null {
  return settings.endpoint ?? process.env["AWS_ENDPOINT_URL_S3"] ?? process.env["AWS_ENDPOINT_URL"] ?? null;
}

/** The SDK and the one client, made on first use. */
export function s3(): Promise<{ sdk: S3Sdk; client: Sdk.S3Client }> {
  loaded ??= (async () => {
    // The pinned SDK runs on our Node (≥ 20.17); its notice about later releases is no run's business.
    process.env["AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED"] ??= "true";
    const loadedModule = (await import("@aws-sdk/client-s3")) as S3Sdk & { default?: S3Sdk };
    const sdk = loadedModule.S3Client ? loadedModule : loadedModule.default!; // bundled CommonJS: its exports are the default
    const endpoint = configuredEndpoint();
    const make = (region?: string) =>
      new sdk.S3Client({
        ...(region ? { region } : {}),
        ...(endpoint ? { endpoint, forcePathStyle: true } : {}),
        requestChecksumCalculation: "WHEN_REQUIRED",
        responseChecksumValidation: "WHEN_REQUIRED",
        // With `Expect: 100-continue` (the SDK's default for bodies over 2 MB) Ceph 16 says
        // "continue" before it checks the quota, then drops the connection: a full bucket
        // would show as EPIPE/timeouts instead of its QuotaExceeded answer.
        expectContinueHeader: false,
        maxAttempts: 4,
      });
    let client = make();
    try {
      await client.config.region();
    } catch {
      client.destroy();
      client = make("us-east-1"); // nobody set one: environment and profile files are silent
    }
    return { sdk, client };
  })();
  return loaded;
}

/** A client made elsewhere (unit tests: a fake server's); null goes back to the configured one. */
export function useS3Client(made: { sdk: S3Sdk; client: Sdk.S3Client } | null): void {
  loaded = made ? Promise.resolve(made) : null;
}

/** Closes the client's sockets (the process may then exit on its own). */
export async function closeS3(): Promise<void> {
  if (!loaded) return;
  const { client } = await loaded;
  client.destroy();
  loaded = null;
}
