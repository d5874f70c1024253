/**
 * One sorted extent index for a whole backup chain (full + incs/diffs up to a point in time).
 *
 * Every decodable unit of payload is a *piece*: an uncompressed data frame (its raw payload),
 * or one lz4 frame of a compressed data frame (a data frame read in chunks has several).
 * The index is a list of non-overlapping *ranges* that cover `[0, size)` without gaps; each
 * range is a hole or points at a piece. Later files override earlier ones where they have
 * frames: an incremental/differential stream only with its data frames (it has no zero
 * frames; what it does not list is unchanged), a full-style stream (a full, or an inc that fell
 * back to full) everywhere, holes included.
 *
 * Storage is typed arrays (12 bytes per range, 36 per piece), so memory follows the number
 * of frames, not the disk size; a lookup is a binary search over the range starts.
 */

/** Growable typed arrays. */
class F64 {
  a = new Float64Array(64);
  n = 0;
  push(v: number): void {
    if (this.n === this.a.length) {
      const b = new Float64Array(this.a.length * 2);
      b.set(this.a);
      this.a = b;
    }
    this.a[this.n++] = v;
  }
  trimmed(): Float64Array {
    return this.a.slice(0, this.n);
  }
}

class I32 {
  a = new Int32Array(64);
  n = 0;
  push(v: number): void {
    if (this.n === this.a.length) {
      const b = new Int32Array(this.a.length * 2);
      b.set(this.a);
      this.a = b;
    }
    this.a[this.n++] = v;
  }
  trimmed(): Int32Array {
    return this.a.slice(0, this.n);
  }
}

/** `piece` value of a hole. */
export const HOLE = -1;

export interface PieceSpec {
  /** Index of the file (in chain order). */
  file: number;
  /** Disk offset of the piece's first byte. */
  diskStart: number;
  /** Decoded byte count. */
  length: number;
  /** File position of the payload (raw bytes, or the lz4 frame). */
  pos: number;
  /** lz4 frame byte count; -1 for raw payload. */
  csize: number;
}

export interface Segment {
  /** Disk offset. */
  start: number;
  length: number;
  /** Piece index or HOLE. */
  piece: number;
}

/** The frames of one stream file, in disk order, as the index builder takes them. */
export class Layer {
  private readonly starts = new F64();
  private readonly lengths = new F64();
  private readonly pieces = new I32();
  private end = 0;

  /**
   * @param virtualSize the disk size the file records
   * @param replaceAll a full-style stream: it defines the whole disk (gaps become holes);
   *   otherwise only its frames apply
   */
  constructor(
    readonly virtualSize: number,
    readonly replaceAll: boolean,
  ) {}

  /** Adds a frame (a piece, or HOLE for a zero frame); frames must ascend without overlap. */
  add(start: number, length: number, piece: number): void {
    if (!(length > 0)) return;
    if (start < this.end) throw new RangeError(`layer frames out of order at disk offset ${start}`);
    this.starts.push(start);
    this.lengths.push(length);
    this.pieces.push(piece);
    this.end = start + length;
  }

  get count(): number {
    return this.starts.n;
  }

  /** @internal */
  frame(i: number): [number, number, number] {
    return [this.starts.a[i]!, this.lengths.a[i]!, this.pieces.a[i]!];
  }
}

export class ChainIndexBuilder {
  private readonly pFile = new I32();
  private readonly pStart = new F64();
  private readonly pLength = new F64();
  private readonly pPos = new F64();
  private readonly pCsize = new F64();
  private starts: Float64Array = new Float64Array(0);
  private pieces: Int32Array = new Int32Array(0);
  private size = 0;
  private layers = 0;

  addPiece(p: PieceSpec): number {
    this.pFile.push(p.file);
    this.pStart.push(p.diskStart);
    this.pLength.push(p.length);
    this.pPos.push(p.pos);
    this.pCsize.push(p.csize);
    return this.pFile.n - 1;
  }

  /** Applies one file on top of what is there; the disk size becomes the layer's. */
  apply(layer: Layer): void {
    const newSize = layer.virtualSize;
    const out = new RangeWriter();
    if (layer.replaceAll || this.layers === 0) {
      let pos = 0;
      for (let k = 0; k < layer.count && pos < newSize; k++) {
        const [s, len, p] = layer.frame(k);
        const e = Math.min(s + len, newSize);
        if (s >= newSize) break;
        if (s > pos) out.emit(pos, HOLE);
        out.emit(s, p);
        pos = e;
      }
      if (pos < newSize) out.emit(pos, HOLE);
    } else {
      const S = this.starts;
      const P = this.pieces;
      const oldSize = this.size;
      let i = 0;
      // Copies the current ranges over [from, to).
      const copy = (from: number, to: number): void => {
        if (from >= to) return;
        while (i + 1 < S.length && S[i + 1]! <= from) i++;
        if (from >= oldSize || S.length === 0) {
          out.emit(from, HOLE);
          return;
        }
        out.emit(from, P[i]!);
        while (i + 1 < S.length && S[i + 1]! < to) {
          i++;
          out.emit(S[i]!, P[i]!);
        }
        if (to > oldSize && oldSize > from) out.emit(oldSize, HOLE);
      };
      let pos = 0;
      for (let k = 0; k < layer.count; k++) {
        const [s, len, p] = layer.frame(k);
        if (s >= newSize) break;
        copy(pos, s);
        out.emit(s, p);
        pos = Math.min(s + len, newSize);
      }
      copy(pos, newSize);
    }
    this.starts = out.starts.trimmed();
    this.pieces = out.pieces.trimmed();
    this.size = newSize;
    this.layers++;
  }

  finish(): ChainIndex {
    return new ChainIndex(
      this.size,
      this.starts,
      this.pieces,
      this.pFile.trimmed(),
      this.pStart.trimmed(),
      this.pLength.trimmed(),
      this.pPos.trimmed(),
      this.pCsize.trimmed(),
    );
  }
}

/** Builds the range list, merging neighbours that continue the same piece or hole. */
class RangeWriter {
  readonly starts = new F64();
  readonly pieces = new I32();

  emit(start: number, piece: number): void {
    const n = this.starts.n;
    if (n > 0) {
      if (this.pieces.a[n - 1] === piece) return; // same hole, or the same piece continuing
      if (this.starts.a[n - 1] === start) {
        // the previous range was empty: replace it
        this.pieces.a[n - 1] = piece;
        if (n > 1 && this.pieces.a[n - 2] === piece) {
          this.starts.n--;
          this.pieces.n--;
        }
        return;
      }
    }
    this.starts.push(start);
    this.pieces.push(piece);
  }
}

export class ChainIndex {
  constructor(
    /** Disk size (the last file's virtual size). */
    readonly size: number,
    /** Range starts, ascending; range i ends where i+1 starts (the last at `size`). */
    readonly rangeStarts: Float64Array,
    /** Piece of each range, or HOLE. */
    readonly rangePieces: Int32Array,
    readonly pieceFile: Int32Array,
    readonly pieceStart: Float64Array,
    readonly pieceLength: Float64Array,
    readonly piecePos: Float64Array,
    readonly pieceCsize: Float64Array,
  ) {}

  get rangeCount(): number {
    return this.rangeStarts.length;
  }

  get pieceCount(): number {
    return this.pieceFile.length;
  }

  rangeEnd(i: number): number {
    return i + 1 < this.rangeStarts.length ? this.rangeStarts[i + 1]! : this.size;
  }

  /** The range holding `offset` (0 <= offset < size): binary search. */
  find(offset: number): number {
    const S = this.rangeStarts;
    let lo = 0;
    let hi = S.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (S[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** The ranges over `[offset, offset+length)`, clipped to it. */
  segments(offset: number, length: number): Segment[] {
    const out: Segment[] = [];
    const end = Math.min(offset + length, this.size);
    if (offset >= end) return out;
    for (let i = this.find(offset), pos = offset; pos < end; i++) {
      const e = Math.min(this.rangeEnd(i), end);
      out.push({ start: pos, length: e - pos, piece: this.rangePieces[i]! });
      pos = e;
    }
    return out;
  }

  /** Bytes of the disk that hold data (not holes). */
  dataBytes(): number {
    let sum = 0;
    for (let i = 0; i < this.rangeStarts.length; i++) {
      if (this.rangePieces[i] !== HOLE) sum += this.rangeEnd(i) - this.rangeStarts[i]!;
    }
    return sum;
  }
}
