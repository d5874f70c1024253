/**
 * libvirt errors. Every failed libvirt call rejects with a `LibvirtError` carrying libvirt's
 * error number (`code`, e.g. VIR_ERR_NO_DOMAIN = 42), the subsystem (`domain`, virErrorDomain)
 * and libvirt's own message, which is what the original tool prints (str(libvirtError)).
 */
import * as C from "./constants.js";

export class LibvirtError extends Error {
  override readonly name = "LibvirtError";
  /** virErrorNumber, e.g. C.VIR_ERR_NO_DOMAIN_CHECKPOINT (103). */
  readonly code: number;
  /** virErrorDomain, e.g. C.VIR_FROM_QEMU (10). */
  readonly domain: number;
  /** virErrorLevel: C.VIR_ERR_WARNING or C.VIR_ERR_ERROR. */
  readonly level: number;

  constructor(message: string, code: number, domain = 0, level: number = C.VIR_ERR_ERROR) {
    super(message);
    this.code = code;
    this.domain = domain;
    this.level = level;
  }

  /** The libvirt name of `code`, e.g. "VIR_ERR_NO_DOMAIN" (or "VIR_ERR_<n>" if unknown). */
  get codeName(): string {
    return errorCodeName(this.code);
  }
}

let codeNames: Map<number, string> | undefined;

/** The libvirt name of an error number, e.g. 42 → "VIR_ERR_NO_DOMAIN". */
export function errorCodeName(code: number): string {
  if (!codeNames) {
    codeNames = new Map();
    const levels = new Set(["VIR_ERR_NONE", "VIR_ERR_WARNING", "VIR_ERR_ERROR"]);
    for (const [name, value] of Object.entries(C)) {
      if (name.startsWith("VIR_ERR_") && !levels.has(name) && typeof value === "number" && !codeNames.has(value)) {
        codeNames.set(value, name);
      }
    }
  }
  return codeNames.get(code) ?? `VIR_ERR_${code}`;
}

/** True for a LibvirtError, optionally with the given error number(s). */
export function isLibvirtError(e: unknown, code?: number | readonly number[]): e is LibvirtError {
  if (!(e instanceof LibvirtError)) return false;
  if (code === undefined) return true;
  return typeof code === "number" ? e.code === code : code.includes(e.code);
}

interface NativeLibvirtError {
  message: string;
  code: number;
  domain: number;
  level: number;
  libvirt: true;
}

function isNativeError(e: unknown): e is NativeLibvirtError {
  return e instanceof Error && (e as Partial<NativeLibvirtError>).libvirt === true;
}

/**
 * Awaits a native call and turns its rejection into a LibvirtError. The new error is created
 * here, inside the caller's async chain, so its stack shows who made the call.
 */
export async function lvCall<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    if (isNativeError(e)) throw new LibvirtError(e.message, e.code, e.domain, e.level);
    throw e;
  }
}
