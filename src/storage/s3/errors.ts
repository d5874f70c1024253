/** S3 errors as the errors the rest of the code knows from files: ENOENT, ENOSPC, one line naming the object. */
import { shownPath } from "../object-path.js";

interface SdkError {
  name?: string;
  Code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

const NOT_FOUND = new Set(["NoSuchKey", "NotFound", "NoSuchUpload"]);

export function isNotFound(e: unknown): boolean {
  const err = e as SdkError;
  return NOT_FOUND.has(err?.name ?? "") || err?.$metadata?.httpStatusCode === 404 && err?.name !== "NoSuchBucket";
}

/** An error naming `path`, with `code` ENOENT (no such object), ENOSPC (quota) or EIO. */
export function objectError(e: unknown, path: string, doing: string): NodeJS.ErrnoException {
  const err = e as SdkError;
  const status = err?.$metadata?.httpStatusCode;
  const name = err?.name ?? err?.Code ?? "Error";
  const detail = err?.message && err.message !== name && err.message !== "UnknownError" ? `: ${err.message}` : "";
  const out: NodeJS.ErrnoException = new Error(`Unable to ${doing} [${shownPath(path)}]: ${name}${status ? ` (HTTP ${status})` : ""}${detail}`.replace(/\s+/g, " "));
  out.code = isNotFound(e) ? "ENOENT" : name === "QuotaExceeded" || name === "EntityTooLarge" ? "ENOSPC" : "EIO";
  return out;
}
