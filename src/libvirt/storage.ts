/** Storage pools and volumes (virStoragePoolPtr, virStorageVolPtr). */
import { native, type LvStoragePoolHandle, type LvStorageVolHandle } from "../native/index.js";
import type { ConnectionRef } from "./domain.js";
import { lvCall } from "./errors.js";

export class StoragePool {
  #handle: LvStoragePoolHandle | null;
  /** Pool name (cached by libvirt). */
  readonly name: string;

  /** @internal made by Connection lookups. */
  constructor(
    readonly connection: ConnectionRef,
    handle: LvStoragePoolHandle,
  ) {
    this.#handle = handle;
    this.name = native.lvStoragePoolGetName(handle);
  }

  get handle(): LvStoragePoolHandle {
    if (!this.#handle) throw new Error(`storage pool ${this.name} is freed`);
    return this.#handle;
  }

  /** Rescans the pool's volumes (virStoragePoolRefresh). */
  async refresh(flags = 0): Promise<void> {
    return lvCall(native.lvStoragePoolRefresh(this.handle, flags));
  }

  /** virStorageVolLookupByName. Unknown: C.VIR_ERR_NO_STORAGE_VOL (50). */
  async volumeByName(name: string): Promise<StorageVol> {
    return new StorageVol(await lvCall(native.lvStorageVolLookupByName(this.handle, name)));
  }

  /** Drops the reference now (a finalizer does it otherwise). */
  free(): void {
    if (this.#handle) native.lvFree(this.#handle);
    this.#handle = null;
  }
}

export class StorageVol {
  #handle: LvStorageVolHandle | null;
  /** Volume name (cached by libvirt). */
  readonly name: string;

  /** @internal made by lookups. */
  constructor(handle: LvStorageVolHandle) {
    this.#handle = handle;
    this.name = native.lvStorageVolGetName(handle);
  }

  get handle(): LvStorageVolHandle {
    if (!this.#handle) throw new Error(`storage volume ${this.name} is freed`);
    return this.#handle;
  }

  /** The volume's path on the host (virStorageVolGetPath). */
  async path(): Promise<string> {
    return lvCall(native.lvStorageVolGetPath(this.handle));
  }

  free(): void {
    if (this.#handle) native.lvFree(this.#handle);
    this.#handle = null;
  }
}
