/**
 * A libvirt connection (virConnectPtr). Open one with `Connection.open(uri, options)`; every
 * URI scheme and auth method of the C library works (qemu:///system, qemu+ssh://…,
 * `?authfile=`, SASL user/password). Close it with `close()`; a GC finalizer closes forgotten
 * ones. All methods run their libvirt call off the event loop and reject with a LibvirtError.
 */
import { native, type LvConnectHandle } from "../native/index.js";
import * as C from "./constants.js";
import { Domain } from "./domain.js";
import { lvCall } from "./errors.js";
import { StoragePool, StorageVol } from "./storage.js";

export interface OpenOptions {
  /** SASL user (answers VIR_CRED_AUTHNAME); with `password`, virConnectOpenAuth is used. */
  user?: string;
  /** SASL password (answers VIR_CRED_PASSPHRASE). */
  password?: string;
  /** Open read-only (VIR_CONNECT_RO). */
  readOnly?: boolean;
  /** Use virConnectOpenAuth even without credentials (e.g. for `?authfile=` URIs). */
  auth?: boolean;
}

/** VIR_CONNECT_CLOSE_REASON_* as a word, for logs. */
export function closeReasonName(reason: number): string {
  switch (reason) {
    case C.VIR_CONNECT_CLOSE_REASON_ERROR:
      return "error";
    case C.VIR_CONNECT_CLOSE_REASON_EOF:
      return "eof";
    case C.VIR_CONNECT_CLOSE_REASON_KEEPALIVE:
      return "keepalive";
    case C.VIR_CONNECT_CLOSE_REASON_CLIENT:
      return "client";
    default:
      return `unknown (${reason})`;
  }
}

/** Local libvirt library version (virGetVersion), e.g. 9000000 for 9.0.0. */
export function localLibVersion(): number {
  return native.lvGetVersion();
}

/** 9000000 → "9.0.0". */
export function formatVersion(version: number): string {
  return `${Math.floor(version / 1_000_000)}.${Math.floor(version / 1000) % 1000}.${version % 1000}`;
}

export type CloseListener = (reason: number) => void;

export class Connection {
  #handle: LvConnectHandle | null;
  #listeners = new Set<CloseListener>();
  #closeRegistration: Promise<void> | null = null;
  #libVersion: number | undefined;

  private constructor(
    handle: LvConnectHandle,
    /** The URI as passed to open (null: libvirt's default). */
    readonly uri: string | null,
  ) {
    this.#handle = handle;
  }

  /**
   * Opens a connection. With `user`/`password` (or `auth: true`) it uses virConnectOpenAuth
   * answering AUTHNAME and PASSPHRASE from the given strings; otherwise virConnectOpen
   * (virConnectOpenReadOnly with `readOnly`). Bad URIs and auth failures reject with a
   * LibvirtError (auth failure: C.VIR_ERR_AUTH_FAILED).
   */
  static async open(uri: string | null, options: OpenOptions = {}): Promise<Connection> {
    const handle = await lvCall(
      native.lvConnectOpen(
        uri,
        options.user ?? null,
        options.password ?? null,
        options.readOnly ? C.VIR_CONNECT_RO : 0,
        options.auth ?? false,
      ),
    );
    return new Connection(handle, uri);
  }

  /** The raw handle, for the other wrappers. Throws once closed. */
  get handle(): LvConnectHandle {
    if (!this.#handle) throw new Error("libvirt connection is closed");
    return this.#handle;
  }

  get closed(): boolean {
    return this.#handle === null;
  }

  /**
   * Closes the connection (unregisters the close callback first, so listeners are not called).
   * Domains and other objects looked up on it stay usable until freed: libvirt keeps the
   * connection open while they hold references. Closing twice is a no-op.
   */
  async close(): Promise<void> {
    const handle = this.#handle;
    if (!handle) return;
    this.#handle = null;
    this.#listeners.clear();
    await lvCall(native.lvConnectClose(handle));
  }

  /** Host name of the libvirt host (virConnectGetHostname). */
  async hostname(): Promise<string> {
    return lvCall(native.lvConnectGetHostname(this.handle));
  }

  /** The host's capabilities XML (virConnectGetCapabilities). */
  async capabilities(): Promise<string> {
    return lvCall(native.lvConnectGetCapabilities(this.handle));
  }

  /** The canonical URI of the connection (virConnectGetURI). */
  async canonicalUri(): Promise<string> {
    return lvCall(native.lvConnectGetURI(this.handle));
  }

  /** libvirt version of the connected daemon (virConnectGetLibVersion), cached. */
  async libVersion(): Promise<number> {
    this.#libVersion ??= await lvCall(native.lvConnectGetLibVersion(this.handle));
    return this.#libVersion;
  }

  /** Hypervisor version (virConnectGetVersion), e.g. 7002000 for qemu 7.2. */
  async hypervisorVersion(): Promise<number> {
    return lvCall(native.lvConnectGetVersion(this.handle));
  }

  /** virConnectIsAlive. False once the transport died. */
  async isAlive(): Promise<boolean> {
    if (!this.#handle) return false;
    return lvCall(native.lvConnectIsAlive(this.#handle));
  }

  /**
   * Enables keepalive messages (virConnectSetKeepAlive): the connection is closed (reason
   * keepalive) after `count` unanswered probes sent every `interval` seconds. Resolves false
   * if the peer does not support keepalive.
   */
  async setKeepAlive(interval = 5, count = 3): Promise<boolean> {
    return (await lvCall(native.lvConnectSetKeepAlive(this.handle, interval, count))) === 0;
  }

  /**
   * Calls `listener(reason)` (a C.VIR_CONNECT_CLOSE_REASON_*) when the connection is lost
   * (daemon gone, keepalive timeout, I/O error). Not called for `close()`. The registration
   * does not keep the process alive. Resolves with a function that removes the listener.
   */
  async onClose(listener: CloseListener): Promise<() => void> {
    this.#listeners.add(listener);
    this.#closeRegistration ??= lvCall(
      native.lvConnectRegisterCloseCallback(this.handle, (reason) => {
        for (const l of [...this.#listeners]) {
          try {
            l(reason);
          } catch (e) {
            queueMicrotask(() => {
              throw e;
            });
          }
        }
      }),
    );
    try {
      await this.#closeRegistration;
    } catch (e) {
      this.#closeRegistration = null;
      this.#listeners.delete(listener);
      throw e;
    }
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** virDomainLookupByName. Unknown name: LibvirtError with code C.VIR_ERR_NO_DOMAIN (42). */
  async lookupDomain(name: string): Promise<Domain> {
    return new Domain(this, await lvCall(native.lvDomainLookupByName(this.handle, name, 0)));
  }

  /** virDomainLookupByUUIDString. */
  async lookupDomainByUUID(uuid: string): Promise<Domain> {
    return new Domain(this, await lvCall(native.lvDomainLookupByUUIDString(this.handle, uuid, 0)));
  }

  /** virConnectListAllDomains with C.VIR_CONNECT_LIST_DOMAINS_* flags (0: all). */
  async listAllDomains(flags = 0): Promise<Domain[]> {
    const handles = await lvCall(native.lvConnectListAllDomains(this.handle, flags));
    return handles.map((h) => new Domain(this, h));
  }

  /** Defines (or redefines) a persistent domain (virDomainDefineXMLFlags). */
  async defineXML(xml: string, flags = 0): Promise<Domain> {
    return new Domain(this, await lvCall(native.lvDomainDefineXML(this.handle, xml, flags)));
  }

  /** Creates and starts a transient domain (virDomainCreateXML, C.VIR_DOMAIN_START_* flags). */
  async createXML(xml: string, flags = 0): Promise<Domain> {
    return new Domain(this, await lvCall(native.lvDomainCreateXML(this.handle, xml, flags)));
  }

  /** virStoragePoolLookupByName. Unknown: C.VIR_ERR_NO_STORAGE_POOL (49). */
  async storagePoolByName(name: string): Promise<StoragePool> {
    return new StoragePool(this, await lvCall(native.lvStoragePoolLookupByName(this.handle, name)));
  }

  /** virStoragePoolLookupByTargetPath: the pool whose target directory is `path`. */
  async storagePoolByTargetPath(path: string): Promise<StoragePool> {
    return new StoragePool(this, await lvCall(native.lvStoragePoolLookupByTargetPath(this.handle, path)));
  }

  /** virStorageVolLookupByPath. Unknown: C.VIR_ERR_NO_STORAGE_VOL (50). */
  async storageVolByPath(path: string): Promise<StorageVol> {
    return new StorageVol(await lvCall(native.lvStorageVolLookupByPath(this.handle, path)));
  }
}
