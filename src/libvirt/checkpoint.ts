/** Domain checkpoints (virDomainCheckpointPtr). */
import { native, type LvCheckpointHandle } from "../native/index.js";
import { lvCall } from "./errors.js";

export class Checkpoint {
  #handle: LvCheckpointHandle | null;
  /** Checkpoint name (cached by libvirt). */
  readonly name: string;

  /** @internal made by Domain methods. */
  constructor(
    /** The domain it belongs to. */
    readonly domain: { readonly name: string },
    handle: LvCheckpointHandle,
  ) {
    this.#handle = handle;
    this.name = native.lvCheckpointGetName(handle);
  }

  get handle(): LvCheckpointHandle {
    if (!this.#handle) throw new Error(`checkpoint ${this.name} is freed`);
    return this.#handle;
  }

  /**
   * Checkpoint XML (virDomainCheckpointGetXMLDesc). Flags: C.VIR_DOMAIN_CHECKPOINT_XML_SIZE (4)
   * adds `size` per disk (needs a running domain), NO_DOMAIN (2) leaves out `<domain>`.
   */
  async xmlDesc(flags = 0): Promise<string> {
    return lvCall(native.lvCheckpointGetXMLDesc(this.handle, flags));
  }

  /** Deletes the checkpoint (C.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY / CHILDREN / CHILDREN_ONLY). */
  async delete(flags = 0): Promise<void> {
    return lvCall(native.lvCheckpointDelete(this.handle, flags));
  }

  /** The parent checkpoint. A root rejects with C.VIR_ERR_NO_DOMAIN_CHECKPOINT (103). */
  async parent(flags = 0): Promise<Checkpoint> {
    return new Checkpoint(this.domain, await lvCall(native.lvCheckpointGetParent(this.handle, flags)));
  }

  /** Its children (virDomainCheckpointListAllChildren); C.VIR_DOMAIN_CHECKPOINT_LIST_DESCENDANTS: all below it, in one call. */
  async listAllChildren(flags = 0): Promise<Checkpoint[]> {
    const handles = await lvCall(native.lvCheckpointListAllChildren(this.handle, flags));
    return handles.map((h) => new Checkpoint(this.domain, h));
  }

  /** Drops the reference now (a finalizer does it otherwise). */
  free(): void {
    if (this.#handle) native.lvFree(this.#handle);
    this.#handle = null;
  }
}
