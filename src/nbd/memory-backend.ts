/**
 * A sparse in-memory export (64 KiB pages allocated on first write). Reports holes as
 * `HOLE|ZERO`, supports every optional operation. Useful for tests and as a scratch target.
 */
import type { BackendExtent, NbdBackend, ZeroFlags } from "./backend.js";
import { NbdBackendError } from "./errors.js";
import { Errno, STATE_HOLE, STATE_ZERO } from "./protocol.js";

const PAGE = 64 * 1024;

export class MemoryBackend implements NbdBackend {
  private readonly pages = new Map<number, Buffer>();
  readonly readOnly: boolean;
  readonly canMultiConn = true;
  flushes = 0;

  constructor(
    readonly size: number,
    opts: { readOnly?: boolean; description?: string } = {},
  ) {
    if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`MemoryBackend: bad size ${size}`);
    this.readOnly = opts.readOnly ?? false;
    if (opts.description !== undefined) this.description = opts.description;
  }

  readonly description?: string;

  /** Bytes currently backed by pages. */
  get allocatedBytes(): number {
    return this.pages.size * PAGE;
  }

  private check(offset: number, length: number): void {
    if (offset < 0 || length < 0 || offset + length > this.size) {
      throw new NbdBackendError(Errno.EINVAL, `range ${offset}+${length} outside ${this.size}`);
    }
  }

  read(offset: number, length: number, into: Buffer): void {
    this.check(offset, length);
    let pos = 0;
    while (pos < length) {
      const abs = offset + pos;
      const idx = Math.floor(abs / PAGE);
      const inPage = abs - idx * PAGE;
      const n = Math.min(PAGE - inPage, length - pos);
      const page = this.pages.get(idx);
      if (page) page.copy(into, pos, inPage, inPage + n);
      else into.fill(0, pos, pos + n);
      pos += n;
    }
  }

  write(offset: number, data: Buffer): void {
    if (this.readOnly) throw new NbdBackendError(Errno.EPERM, "read-only");
    this.check(offset, data.length);
    let pos = 0;
    while (pos < data.length) {
      const abs = offset + pos;
      const idx = Math.floor(abs / PAGE);
      const inPage = abs - idx * PAGE;
      const n = Math.min(PAGE - inPage, data.length - pos);
      let page = this.pages.get(idx);
      if (!page) {
        page = Buffer.alloc(PAGE);
        this.pages.set(idx, page);
        this.sorted = null;
      }
      data.copy(page, inPage, pos, pos + n);
      pos += n;
    }
  }

  /** Zeroes; whole pages are dropped (become holes) unless `noHole`. */
  writeZeroes(offset: number, length: number, flags: ZeroFlags = { noHole: false, fastZero: false }): void {
    if (this.readOnly) throw new NbdBackendError(Errno.EPERM, "read-only");
    this.check(offset, length);
    let pos = 0;
    while (pos < length) {
      const abs = offset + pos;
      const idx = Math.floor(abs / PAGE);
      const inPage = abs - idx * PAGE;
      const n = Math.min(PAGE - inPage, length - pos);
      const page = this.pages.get(idx);
      if (n === PAGE && !flags.noHole) {
        if (this.pages.delete(idx)) this.sorted = null;
      } else if (page) page.fill(0, inPage, inPage + n);
      else if (flags.noHole) {
        this.pages.set(idx, Buffer.alloc(PAGE));
        this.sorted = null;
      }
      pos += n;
    }
  }

  trim(offset: number, length: number): void {
    this.writeZeroes(offset, length, { noHole: false, fastZero: false });
  }

  flush(): void {
    this.flushes++;
  }

  private sorted: number[] | null = null;

  /** First allocated page index >= idx, or Infinity. */
  private nextAllocated(idx: number): number {
    if (!this.sorted) this.sorted = [...this.pages.keys()].sort((a, b) => a - b);
    const s = this.sorted;
    let lo = 0;
    let hi = s.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (s[mid]! < idx) lo = mid + 1;
      else hi = mid;
    }
    return lo < s.length ? s[lo]! : Infinity;
  }

  blockStatus(offset: number, length: number): BackendExtent[] {
    this.check(offset, length);
    const out: BackendExtent[] = [];
    let pos = 0;
    while (pos < length && out.length < 65536) {
      const abs = offset + pos;
      const idx = Math.floor(abs / PAGE);
      const inPage = abs - idx * PAGE;
      const allocated = this.pages.has(idx);
      let n = Math.min(PAGE - inPage, length - pos);
      if (!allocated) {
        // Jump over the whole run of missing pages.
        const next = this.nextAllocated(idx);
        n = Math.min(next * PAGE - abs, length - pos);
      }
      const flags = allocated ? 0 : STATE_HOLE | STATE_ZERO;
      const last = out[out.length - 1];
      if (last && last.flags === flags) last.length += n;
      else out.push({ length: n, flags });
      pos += n;
    }
    return out;
  }
}
