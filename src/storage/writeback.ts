/**
 * Early writeback for a file written front to back: once the writer is a window past a range,
 * writeback of that range is started (sync_file_range), so disk writes overlap the transfer
 * and the final fsync finds little left to do; the writer waits when several ranges are still
 * pending, so dirty page cache stays bounded. A hint only: errors are ignored here, the fsync
 * that makes the file durable reports them. Written-back pages are then dropped from the page
 * cache (as nbdcopy does): a backup does not fill the host's memory with data nobody reads
 * soon, and new writes reuse freed pages (fresh pages are costly in a VM). Measured on a 2 GiB
 * full backup: data phase 2.9 s → 2.2 s (writeback), system time about halved (eviction).
 */
import { native } from "../native/index.js";

/** Writeback starts for data at least this far behind the write position. */
const WINDOW = 8 << 20;
/** Ranges whose writeback may be pending before the writer waits. */
const MAX_PENDING = 4;

export class EarlyWriteback {
  /** Start of the range whose writeback has not been started. */
  private from = 0;
  private pending = 0;
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly fd: number) {}

  /**
   * Every write below `end` has been issued. Resolves at once, or when the writer should wait.
   * Holes are skipped cheaply (only dirty pages are written back).
   */
  advance(end: number): Promise<void> | null {
    const upTo = Math.floor(end / WINDOW) * WINDOW - WINDOW;
    if (upTo - this.from >= WINDOW) {
      const from = this.from;
      this.from = upTo;
      this.pending++;
      this.chain = this.chain
        .then(() => native.syncFileRange(this.fd, from, upTo - from, true, true))
        .catch(() => undefined)
        .finally(() => void this.pending--);
    }
    return this.pending > MAX_PENDING ? this.chain : null;
  }

  /** Waits for writeback calls under way (before the descriptor is synced or closed). */
  drain(): Promise<void> {
    return this.chain;
  }
}

/**
 * Writeback of a file another process is writing (qemu-img convert's target image): every
 * `step` bytes of progress the dirty pages written so far are sent to disk and dropped from
 * the page cache, so the fsync that makes the image durable at the end finds little left and
 * the copy does not fill the host's memory. One call at a time; errors are left to the fsync.
 */
export class FollowingWriteback {
  private sinceKick = 0;
  private busy: Promise<void> | null = null;

  constructor(
    private readonly fd: number,
    private readonly step = 64 << 20,
  ) {}

  /** `bytes` more were handed to the writer. */
  progress(bytes: number): void {
    this.sinceKick += bytes;
    if (this.sinceKick < this.step || this.busy) return;
    this.sinceKick = 0;
    // Whole file (length 0): the writer's pages land anywhere in it (clusters out of order).
    this.busy = native
      .syncFileRange(this.fd, 0, 0, true, true)
      .catch(() => undefined)
      .finally(() => (this.busy = null));
  }

  /** Waits for the call under way, then makes the file durable. */
  async finish(sync: () => Promise<void>): Promise<void> {
    await this.busy;
    await sync();
  }
}
