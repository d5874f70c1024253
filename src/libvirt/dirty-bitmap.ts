/**
 * A named persistent dirty bitmap of a qcow2 image: what a libvirt checkpoint is made of on
 * disk. Seen two ways: online through the running qemu (`block-bitmaps.ts`, QMP query-block)
 * and offline through qemu-img (`../qemu/img-bitmaps.ts`); each adds the state only its side
 * reports (docs/behaviour.md, "Bitmaps in the image").
 */
export interface DirtyBitmap {
  name: string;
  /** Bytes covered by one bit. */
  granularity: number;
  /**
   * Records the guest's writes: online QMP `recording`; offline the qcow2 flag "auto" (qemu
   * enables the bitmap when it opens the image).
   */
  recording: boolean;
}
