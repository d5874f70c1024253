/**
 * Adler-32 of a whole file from the reads somebody else makes anyway: a restore reads (almost)
 * every payload byte once to serve it, so checking `.chksum` with a second full read doubles
 * the I/O. The tap wraps the file's source, checksums every range read through it, and at the
 * end reads only what nobody read (headers, data a newer file overrides) to combine the whole.
 *
 *   const tap = new AdlerTap(source);
 *   serve(tap);                      // tap.read / tap.readSync as the source
 *   const sum = await tap.finish();  // Adler-32 of every byte of the file
 *
 * Ranges are kept merged (a read that starts where an earlier one ended extends it), so the
 * bookkeeping stays small for sequential readers; a range read twice or overlapping is simply
 * read again at the end.
 */
import { native } from "../native/index.js";
import { adler32Range } from "./checksum.js";
import type { RandomAccessSource } from "./source.js";

interface Range {
  start: number;
  end: number;
  adler: number;
}

const GAP_BUFFER = 4 << 20;

export class AdlerTap implements RandomAccessSource {
  /** Ranges by end offset, to extend the one a sequential read continues. */
  private readonly byEnd = new Map<number, Range>();
  /** Present when the wrapped source has it (a closure made once, not per read). */
  readonly readSync: RandomAccessSource["readSync"];

  constructor(private readonly source: RandomAccessSource) {
    const sync = source.readSync?.bind(source);
    this.readSync = sync
      ? (buf, offset, length, position) => {
          const n = sync(buf, offset, length, position);
          this.record(buf, offset, n, position);
          return n;
        }
      : undefined;
  }

  get name(): string {
    return this.source.name;
  }

  get size(): number {
    return this.source.size;
  }

  async read(buf: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    const n = await this.source.read(buf, offset, length, position);
    this.record(buf, offset, n, position);
    return n;
  }

  close(): Promise<void> {
    return this.source.close();
  }

  private record(buf: Uint8Array, offset: number, n: number, position: number): void {
    if (n <= 0) return;
    const adler = native.adler32(1, buf, offset, n);
    const before = this.byEnd.get(position);
    if (before) {
      this.byEnd.delete(position);
      before.adler = native.adler32Combine(before.adler, adler, n);
      before.end = position + n;
      this.byEnd.set(before.end, before);
    } else if (!this.byEnd.has(position + n)) {
      this.byEnd.set(position + n, { start: position, end: position + n, adler });
    }
  }

  /**
   * Adler-32 of the whole file: the recorded ranges, and the rest read now (into `buffer`
   * when given: callers finishing many taps share one).
   */
  async finish(buffer?: Buffer): Promise<number> {
    const ranges = [...this.byEnd.values()].sort((a, b) => a.start - b.start || b.end - a.end);
    let sum = 1;
    let at = 0;
    let buf = buffer;
    const readRange = async (start: number, end: number) => {
      if (!this.source.adler32) buf ??= Buffer.allocUnsafe(Math.max(1, Math.min(GAP_BUFFER, this.size)));
      sum = await adler32Range(this.source, start, end, sum, buf);
    };
    for (const r of ranges) {
      if (r.end <= at) continue; // inside what is already summed
      if (r.start === at) {
        sum = native.adler32Combine(sum, r.adler, r.end - r.start);
      } else if (r.start > at) {
        await readRange(at, r.start);
        sum = native.adler32Combine(sum, r.adler, r.end - r.start);
      } else {
        await readRange(at, r.end); // overlaps the summed part: its checksum cannot be split
      }
      at = r.end;
    }
    if (at < this.size) await readRange(at, this.size);
    return sum >>> 0;
  }
}
