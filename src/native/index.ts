/** Loads the project's native addon (lz4 frames, Adler-32, libvirt). */
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { findPackage, PACKAGE_NAME } from "../util/package-root.js";

declare const lvHandleKind: unique symbol;
/**
 * Opaque libvirt object handle made by the addon (src/native/libvirt/common.h). It owns one
 * libvirt reference: `lvFree` (or `lvConnectClose`) drops it now, a GC finalizer otherwise.
 * Use the typed classes in src/libvirt instead of these raw functions.
 */
export interface LvHandle<K extends string> {
  readonly [lvHandleKind]: K;
}
export type LvConnectHandle = LvHandle<"connection">;
export type LvDomainHandle = LvHandle<"domain">;
export type LvCheckpointHandle = LvHandle<"checkpoint">;
export type LvStoragePoolHandle = LvHandle<"storage pool">;
export type LvStorageVolHandle = LvHandle<"storage volume">;
/** Values of libvirt typed parameters (job stats, guest info). */
export type LvTypedParams = Record<string, number | string | boolean>;

/**
 * Raw libvirt binding. Every function returning a Promise runs its libvirt call on libuv's pool
 * and rejects with an Error carrying libvirt's `code` (virErrorNumber), `domain`
 * (virErrorDomain), `level` and `libvirt: true`. Wrong argument types throw a TypeError
 * synchronously; using a freed handle throws an Error synchronously.
 */
export interface LibvirtNative {
  /** Gives up a domain/checkpoint/pool/volume handle's reference now (idempotent; the unref runs off-thread). */
  lvFree(handle: LvHandle<string>): void;
  lvHandleInfo(handle: LvHandle<string>): { kind: string; open: boolean };
  /** Handles still holding a libvirt reference / handle objects not yet garbage-collected (leak tests). */
  lvHandleCounts(): { open: number; wrapped: number };
  /** Local library version, major*1e6 + minor*1e3 + micro. */
  lvGetVersion(): number;

  /** virConnectOpenAuth when user/password/useAuth, else virConnectOpen(ReadOnly) (flags & VIR_CONNECT_RO). */
  lvConnectOpen(
    uri: string | null,
    user: string | null,
    password: string | null,
    flags: number,
    useAuth: boolean,
  ): Promise<LvConnectHandle>;
  /** Unregisters the close callback, drops the reference; resolves with libvirt's remaining count. */
  lvConnectClose(conn: LvConnectHandle): Promise<number>;
  lvConnectGetHostname(conn: LvConnectHandle): Promise<string>;
  lvConnectGetURI(conn: LvConnectHandle): Promise<string>;
  lvConnectGetCapabilities(conn: LvConnectHandle): Promise<string>;
  lvConnectGetLibVersion(conn: LvConnectHandle): Promise<number>;
  lvConnectGetVersion(conn: LvConnectHandle): Promise<number>;
  lvConnectIsAlive(conn: LvConnectHandle): Promise<boolean>;
  lvConnectSetKeepAlive(conn: LvConnectHandle, interval: number, count: number): Promise<number>;
  /** One per handle; called on the JS thread with a VIR_CONNECT_CLOSE_REASON_*; does not keep the process alive. */
  lvConnectRegisterCloseCallback(conn: LvConnectHandle, cb: (reason: number) => void): Promise<void>;
  lvConnectListAllDomains(conn: LvConnectHandle, flags: number): Promise<LvDomainHandle[]>;
  lvDomainLookupByName(conn: LvConnectHandle, name: string, flags: number): Promise<LvDomainHandle>;
  lvDomainLookupByUUIDString(conn: LvConnectHandle, uuid: string, flags: number): Promise<LvDomainHandle>;
  lvDomainDefineXML(conn: LvConnectHandle, xml: string, flags: number): Promise<LvDomainHandle>;
  lvDomainCreateXML(conn: LvConnectHandle, xml: string, flags: number): Promise<LvDomainHandle>;

  /** Cached in the object, synchronous. */
  lvDomainGetName(dom: LvDomainHandle): string;
  /** Cached in the object, synchronous. */
  lvDomainGetUUIDString(dom: LvDomainHandle): string;
  lvDomainGetXMLDesc(dom: LvDomainHandle, flags: number): Promise<string>;
  lvDomainGetState(dom: LvDomainHandle): Promise<{ state: number; reason: number }>;
  lvDomainIsActive(dom: LvDomainHandle): Promise<number>;
  lvDomainIsPersistent(dom: LvDomainHandle): Promise<number>;
  lvDomainCreate(dom: LvDomainHandle, flags: number): Promise<number>;
  lvDomainDestroy(dom: LvDomainHandle, flags: number): Promise<number>;
  lvDomainShutdown(dom: LvDomainHandle, flags: number): Promise<number>;
  lvDomainSuspend(dom: LvDomainHandle): Promise<number>;
  lvDomainResume(dom: LvDomainHandle): Promise<number>;
  lvDomainUndefine(dom: LvDomainHandle, flags: number): Promise<number>;
  lvDomainGetAutostart(dom: LvDomainHandle): Promise<number>;
  lvDomainSetAutostart(dom: LvDomainHandle, on: number): Promise<number>;
  lvDomainBackupBegin(dom: LvDomainHandle, backupXml: string, checkpointXml: string | null, flags: number): Promise<number>;
  lvDomainBackupGetXMLDesc(dom: LvDomainHandle, flags: number): Promise<string>;
  lvDomainAbortJob(dom: LvDomainHandle): Promise<number>;
  lvDomainGetJobInfo(dom: LvDomainHandle): Promise<{
    type: number;
    timeElapsed: number;
    timeRemaining: number;
    dataTotal: number;
    dataProcessed: number;
    dataRemaining: number;
    memTotal: number;
    memProcessed: number;
    memRemaining: number;
    fileTotal: number;
    fileProcessed: number;
    fileRemaining: number;
  }>;
  lvDomainGetJobStats(dom: LvDomainHandle, flags: number): Promise<{ type: number; params: LvTypedParams }>;
  lvDomainGetBlockInfo(
    dom: LvDomainHandle,
    disk: string,
    flags: number,
  ): Promise<{ capacity: number; allocation: number; physical: number }>;
  /** null when the disk has no block job. */
  lvDomainGetBlockJobInfo(
    dom: LvDomainHandle,
    disk: string,
    flags: number,
  ): Promise<{ type: number; bandwidth: number; cur: number; end: number } | null>;
  lvDomainBlockPull(dom: LvDomainHandle, disk: string, bandwidthMiBs: number, flags: number): Promise<number>;
  lvDomainBlockJobAbort(dom: LvDomainHandle, disk: string, flags: number): Promise<number>;
  lvDomainFSFreeze(dom: LvDomainHandle, mountpoints: string[] | null, flags: number): Promise<number>;
  lvDomainFSThaw(dom: LvDomainHandle, mountpoints: string[] | null, flags: number): Promise<number>;
  lvDomainGetGuestInfo(dom: LvDomainHandle, types: number, flags: number): Promise<LvTypedParams>;
  lvDomainQemuAgentCommand(dom: LvDomainHandle, command: string, timeout: number, flags: number): Promise<string>;
  lvDomainQemuMonitorCommand(dom: LvDomainHandle, command: string, flags: number): Promise<string>;

  lvDomainCheckpointCreateXML(dom: LvDomainHandle, xml: string, flags: number): Promise<LvCheckpointHandle>;
  lvDomainCheckpointLookupByName(dom: LvDomainHandle, name: string, flags: number): Promise<LvCheckpointHandle>;
  lvDomainListAllCheckpoints(dom: LvDomainHandle, flags: number): Promise<LvCheckpointHandle[]>;
  /** Cached in the object, synchronous. */
  lvCheckpointGetName(cp: LvCheckpointHandle): string;
  lvCheckpointGetXMLDesc(cp: LvCheckpointHandle, flags: number): Promise<string>;
  lvCheckpointDelete(cp: LvCheckpointHandle, flags: number): Promise<void>;
  lvCheckpointGetParent(cp: LvCheckpointHandle, flags: number): Promise<LvCheckpointHandle>;
  lvCheckpointListAllChildren(cp: LvCheckpointHandle, flags: number): Promise<LvCheckpointHandle[]>;

  lvStoragePoolLookupByName(conn: LvConnectHandle, name: string): Promise<LvStoragePoolHandle>;
  lvStoragePoolLookupByTargetPath(conn: LvConnectHandle, path: string): Promise<LvStoragePoolHandle>;
  /** Cached in the object, synchronous. */
  lvStoragePoolGetName(pool: LvStoragePoolHandle): string;
  lvStoragePoolRefresh(pool: LvStoragePoolHandle, flags: number): Promise<void>;
  lvStorageVolLookupByName(pool: LvStoragePoolHandle, name: string): Promise<LvStorageVolHandle>;
  lvStorageVolLookupByPath(conn: LvConnectHandle, path: string): Promise<LvStorageVolHandle>;
  /** Cached in the object, synchronous. */
  lvStorageVolGetName(vol: LvStorageVolHandle): string;
  lvStorageVolGetPath(vol: LvStorageVolHandle): Promise<string>;
}

export interface NativeAddon extends LibvirtNative {
  /** Bytes a destination buffer needs to hold one lz4 frame of `length` input bytes. */
  lz4CompressBound(length: number): number;
  /** Compresses `src` into one lz4 frame in `dst`; returns the frame length. */
  lz4Compress(src: Uint8Array, dst: Uint8Array, level: number): number;
  lz4CompressAsync(src: Uint8Array, dst: Uint8Array, level: number): Promise<number>;
  /** Decodes exactly one complete lz4 frame (all of `src`), verifying checksums; returns bytes written. */
  lz4Decompress(src: Uint8Array, dst: Uint8Array): number;
  lz4DecompressAsync(src: Uint8Array, dst: Uint8Array): Promise<number>;
  /** Adler-32 (libdeflate) continuing from `previous` (start with 1). */
  adler32(previous: number, buf: Uint8Array, offset?: number, length?: number): number;
  adler32Async(previous: number, buf: Uint8Array, offset?: number, length?: number): Promise<number>;
  /** CRC-32 (libdeflate, same values as zlib) continuing from `previous` (start with 0). */
  crc32(previous: number, buf: Uint8Array, offset?: number, length?: number): number;
  crc32Async(previous: number, buf: Uint8Array, offset?: number, length?: number): Promise<number>;
  /**
   * Adler-32 of bytes [start, end) of the open file `fd`, continuing `previous`, on libuv's pool
   * (mapped and summed in the page cache, no read buffer); rejects when the file is shorter.
   */
  adler32FileAsync(fd: number, start: number, end: number, previous: number): Promise<number>;
  /** Adler-32 of the concatenation of two ranges, from their checksums (zlib adler32_combine). */
  adler32Combine(adler1: number, adler2: number, length2: number): number;
  /**
   * sync_file_range(2) off the loop: starts writeback of a range; `wait` also waits for it;
   * `evict` (with `wait`) then drops those pages from the page cache (POSIX_FADV_DONTNEED).
   */
  syncFileRange(fd: number, offset: number, length: number, wait: boolean, evict?: boolean): Promise<void>;
  /**
   * Copies `src` into `dst` at `dstOffset` on libuv's pool; with `withAdler`, resolves with
   * the Adler-32 of `src` (summed piece by piece right after copying: one pass), else 0.
   */
  copyAsync(dst: Uint8Array, dstOffset: number, src: Uint8Array, withAdler?: boolean): Promise<number>;
  /** The address of the buffer's first byte modulo `modulus`, a power of two (O_DIRECT alignment). */
  addressModulo(buf: Uint8Array, modulus: number): number;
  /** flock(2) LOCK_EX|LOCK_NB: true when taken, false when another holds it. */
  tryLockExclusive(fd: number): boolean;
  /** TCP_QUICKACK on a TCP socket (acknowledge what arrives at once); false when `fd` is not TCP. */
  tcpQuickAck(fd: number): boolean;
}

const start = dirname(fileURLToPath(import.meta.url));
const packageRoot = findPackage(start)?.root ?? fail(`package.json of ${PACKAGE_NAME} not found above ${start}`);

function fail(message: string): never {
  throw new Error(message);
}

/**
 * Where the addon may be, in the order tried: built here (`npm run build:native` in a checkout,
 * or the install script's source build), then the prebuilt one the npm package ships for this
 * platform (scripts/stage-prebuilt.js at `npm pack`; the Debian package has only that one).
 */
export const addonCandidates: readonly string[] = [
  join(packageRoot, "src/native/build/Release/virtnbd.node"),
  join(packageRoot, "src/native/prebuilds", `${process.platform}-${process.arch}`, "virtnbd.node"),
];

function load(): NativeAddon {
  const require = createRequire(import.meta.url);
  const failures: string[] = [];
  for (const path of addonCandidates) {
    if (!existsSync(path)) continue;
    try {
      return require(path) as NativeAddon;
    } catch (e) {
      failures.push(`${path}: ${(e as Error).message.split("\n")[0]}`);
    }
  }
  if (failures.length === 0) {
    throw new Error(`native addon missing: ${addonCandidates[0]} (run "npm run build:native")`);
  }
  throw new Error(
    `native addon cannot be loaded (${failures.join("; ")}); build it from source: ` +
      `"npm run build:native" in a checkout, or reinstall with "npm install -g --build-from-source"`,
  );
}

export const native: NativeAddon = load();
