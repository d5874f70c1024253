/**
 * Client side of the transmission phase: a synchronous state machine that turns the server's
 * byte stream into per-request results. Simple replies and structured reply chunks
 * (OFFSET_DATA, OFFSET_HOLE, BLOCK_STATUS, NONE, ERROR, ERROR_OFFSET, unknown error types)
 * are matched to pending requests by cookie. READ payloads go straight into the request's
 * destination buffer (and can be read there directly, see `readTarget`).
 *
 * Hostile input: every length is checked against the request it answers before anything is
 * stored; nothing is ever allocated from a peer-announced length (payload we do not keep is
 * skipped, block status descriptors are bounded in number). Any violation calls
 * `protocolError` once and the parser stops.
 */
import { MAX_STRING_LEN, REPLY_FLAG_DONE, REPLY_TYPE_ERROR_BIT, ReplyType, Cmd, SIMPLE_REPLY_MAGIC, STRUCTURED_REPLY_MAGIC } from "./protocol.js";

export interface PendingRequest {
  readonly cookie: number;
  readonly command: number;
  readonly offset: number;
  readonly length: number;
  /** READ: where the `length` bytes go. */
  readonly into: Buffer | null;
  /** READ: covered byte ranges relative to `offset`, flat `[start, end, …]`, sorted and merged. */
  ranges: number[] | null;
  /** BLOCK_STATUS: context id -> flat `[length, flags, length, flags, …]`. */
  status: Map<number, number[]> | null;
  /** First error the server reported (0: none). */
  errno: number;
  errorMessage: string;
  /** ERROR_OFFSET: the offset reported with the error (-1: none). */
  errorOffset: number;
}

export function newPendingRequest(
  cookie: number,
  command: number,
  offset: number,
  length: number,
  into: Buffer | null,
): PendingRequest {
  return {
    cookie,
    command,
    offset,
    length,
    into,
    ranges: command === Cmd.READ ? [] : null,
    status: command === Cmd.BLOCK_STATUS ? new Map() : null,
    errno: 0,
    errorMessage: "",
    errorOffset: -1,
  };
}

export interface ReplyHandler {
  /** The pending request with this cookie, if any. */
  lookup(cookie: number): PendingRequest | undefined;
  /** The reply to `req` is complete (successfully or with `req.errno` set). */
  complete(req: PendingRequest): void;
  /** The server broke the protocol; called once, after which the parser ignores input. */
  protocolError(message: string): void;
}

export interface ReplyParserOptions {
  /** Structured replies were negotiated. */
  structured: boolean;
  /** Meta context ids the server assigned. */
  contextIds: ReadonlySet<number>;
  /** Bound on descriptors in one BLOCK_STATUS chunk (default 1 Mi = 8 MiB of payload). */
  maxDescriptors?: number;
}

const S_HEADER = 0;
const S_DATA = 1;
const S_FIELD = 2;
const S_SKIP = 3;
const S_DESC = 4;
const S_DEAD = 5;

// What to do once a FIELD is complete.
const F_DATA_OFFSET = 1;
const F_HOLE = 2;
const F_BS_CONTEXT = 3;
const F_ERR_HEAD = 4;
const F_ERR_MSG = 5;
const F_ERR_OFFSET = 6;

export const DEFAULT_MAX_DESCRIPTORS = 1 << 20;
const TWO32 = 0x100000000;

export class ReplyParser {
  private state = S_HEADER;
  private readonly hdr = Buffer.alloc(20);
  private hdrHave = 0;
  private hdrNeed = 4;

  private readonly field = Buffer.alloc(MAX_STRING_LEN + 16);
  private fieldHave = 0;
  private fieldNeed = 0;
  private fieldKind = 0;

  private req: PendingRequest | null = null;
  private chunkFlags = 0;
  private chunkType = 0;
  /** Payload bytes of the current structured chunk not consumed yet. */
  private payloadLeft = 0;
  private simpleData = false;

  private dataPos = 0;
  private dataLeft = 0;
  private skipLeft = 0;

  private descLeft = 0;
  private descSum = 0;
  private descOut: number[] = [];

  private errMsgLen = 0;

  private readonly maxDescriptors: number;

  constructor(
    private readonly handler: ReplyHandler,
    private readonly opts: ReplyParserOptions,
  ) {
    this.maxDescriptors = opts.maxDescriptors ?? DEFAULT_MAX_DESCRIPTORS;
  }

  get dead(): boolean {
    return this.state === S_DEAD;
  }

  /** True between replies (no partial message buffered). */
  get idle(): boolean {
    return this.state === S_HEADER && this.hdrHave === 0;
  }

  /** Where the next bytes should land when they are READ payload (zero-copy), else null. */
  readTarget(): Buffer | null {
    if (this.state !== S_DATA) return null;
    const into = this.req!.into!;
    return into.subarray(this.dataPos, this.dataPos + this.dataLeft);
  }

  /** `n` payload bytes were written into the buffer returned by `readTarget()`. */
  filledTarget(n: number): void {
    if (this.state !== S_DATA || n > this.dataLeft) {
      this.fail("internal: direct read outside a payload");
      return;
    }
    this.dataPos += n;
    this.dataLeft -= n;
    if (this.dataLeft === 0) this.afterData();
  }

  feed(buf: Buffer, start: number, end: number): void {
    while (start < end) {
      switch (this.state) {
        case S_HEADER: {
          const k = Math.min(this.hdrNeed - this.hdrHave, end - start);
          buf.copy(this.hdr, this.hdrHave, start, start + k);
          this.hdrHave += k;
          start += k;
          if (this.hdrHave === this.hdrNeed) this.onHeaderBytes();
          break;
        }
        case S_DATA: {
          const k = Math.min(this.dataLeft, end - start);
          buf.copy(this.req!.into!, this.dataPos, start, start + k);
          start += k;
          this.dataPos += k;
          this.dataLeft -= k;
          if (this.dataLeft === 0) this.afterData();
          break;
        }
        case S_FIELD: {
          const k = Math.min(this.fieldNeed - this.fieldHave, end - start);
          buf.copy(this.field, this.fieldHave, start, start + k);
          this.fieldHave += k;
          start += k;
          if (this.fieldHave === this.fieldNeed) this.onField();
          break;
        }
        case S_SKIP: {
          const k = Math.min(this.skipLeft, end - start);
          start += k;
          this.skipLeft -= k;
          if (this.skipLeft === 0) this.endChunk();
          break;
        }
        case S_DESC: {
          // Whole descriptors straight from the input; a split one goes through `field`.
          if (this.fieldHave === 0) {
            while (this.descLeft > 0 && end - start >= 8) {
              if (!this.descriptor(buf.readUInt32BE(start), buf.readUInt32BE(start + 4))) return;
              start += 8;
            }
            if (this.descLeft === 0) {
              this.endChunk();
              break;
            }
          }
          if (start < end) {
            const k = Math.min(8 - this.fieldHave, end - start);
            buf.copy(this.field, this.fieldHave, start, start + k);
            this.fieldHave += k;
            start += k;
            if (this.fieldHave === 8) {
              this.fieldHave = 0;
              if (!this.descriptor(this.field.readUInt32BE(0), this.field.readUInt32BE(4))) return;
              if (this.descLeft === 0) this.endChunk();
            }
          }
          break;
        }
        default:
          return; // dead
      }
    }
  }

  private fail(message: string): void {
    if (this.state === S_DEAD) return;
    this.state = S_DEAD;
    this.req = null;
    this.handler.protocolError(message);
  }

  private onHeaderBytes(): void {
    const magic = this.hdr.readUInt32BE(0);
    if (this.hdrNeed === 4) {
      if (magic === SIMPLE_REPLY_MAGIC) this.hdrNeed = 16;
      else if (magic === STRUCTURED_REPLY_MAGIC) {
        if (!this.opts.structured) return this.fail("structured reply chunk although structured replies were not negotiated");
        this.hdrNeed = 20;
      } else return this.fail(`bad reply magic 0x${magic.toString(16).padStart(8, "0")}`);
      return;
    }
    this.hdrHave = 0;
    this.hdrNeed = 4;
    if (magic === SIMPLE_REPLY_MAGIC) this.onSimple();
    else this.onStructured();
  }

  private lookup(at: number): PendingRequest | null {
    const hi = this.hdr.readUInt32BE(at);
    const lo = this.hdr.readUInt32BE(at + 4);
    const req = hi < 0x200000 ? this.handler.lookup(hi * TWO32 + lo) : undefined;
    if (!req) {
      this.fail(`reply for unknown cookie 0x${hi.toString(16)}${lo.toString(16).padStart(8, "0")}`);
      return null;
    }
    return req;
  }

  private onSimple(): void {
    const error = this.hdr.readUInt32BE(4);
    const req = this.lookup(8);
    if (!req) return;
    if (req.command === Cmd.READ) {
      if (this.opts.structured) return this.fail("simple reply to a read although structured replies were negotiated");
      if (error === 0) {
        this.req = req;
        if (req.length === 0) return this.finish();
        this.simpleData = true;
        this.dataPos = 0;
        this.dataLeft = req.length;
        this.state = S_DATA;
        return;
      }
    } else if (req.command === Cmd.BLOCK_STATUS && error === 0) {
      return this.fail("simple reply without error to a block status request");
    }
    if (error !== 0) {
      req.errno = error;
      req.errorMessage = "";
    }
    this.req = req;
    this.finish();
  }

  private onStructured(): void {
    this.chunkFlags = this.hdr.readUInt16BE(4);
    this.chunkType = this.hdr.readUInt16BE(6);
    const length = this.hdr.readUInt32BE(16);
    const req = this.lookup(8);
    if (!req) return;
    this.req = req;
    this.payloadLeft = length;
    const type = this.chunkType;
    switch (type) {
      case ReplyType.NONE:
        if (length !== 0) return this.fail(`NONE chunk with length ${length}`);
        if (!(this.chunkFlags & REPLY_FLAG_DONE)) return this.fail("NONE chunk without the DONE flag");
        return this.endChunk();
      case ReplyType.OFFSET_DATA:
        if (req.command !== Cmd.READ) return this.fail("data chunk for a request that is not a read");
        if (length < 9 || length - 8 > req.length) return this.fail(`data chunk with bad length ${length}`);
        return this.needField(8, F_DATA_OFFSET);
      case ReplyType.OFFSET_HOLE:
        if (req.command !== Cmd.READ) return this.fail("hole chunk for a request that is not a read");
        if (length !== 12) return this.fail(`hole chunk with length ${length}`);
        return this.needField(12, F_HOLE);
      case ReplyType.BLOCK_STATUS: {
        if (req.command !== Cmd.BLOCK_STATUS) return this.fail("block status chunk for a request that is not block status");
        if (length < 12 || (length - 4) % 8 !== 0) return this.fail(`block status chunk with bad length ${length}`);
        if ((length - 4) / 8 > this.maxDescriptors) {
          return this.fail(`block status chunk with ${(length - 4) / 8} descriptors (limit ${this.maxDescriptors})`);
        }
        return this.needField(4, F_BS_CONTEXT);
      }
      default:
        if (type & REPLY_TYPE_ERROR_BIT) {
          const min = type === ReplyType.ERROR_OFFSET ? 14 : 6;
          if (length < min) return this.fail(`error chunk with length ${length}`);
          return this.needField(6, F_ERR_HEAD);
        }
        return this.fail(`unknown structured reply type ${type}`);
    }
  }

  private needField(n: number, kind: number): void {
    this.fieldNeed = n;
    this.fieldHave = 0;
    this.fieldKind = kind;
    this.payloadLeft -= n;
    this.state = S_FIELD;
  }

  private onField(): void {
    const req = this.req!;
    const f = this.field;
    switch (this.fieldKind) {
      case F_DATA_OFFSET: {
        const off = this.offsetField(0);
        const n = this.payloadLeft;
        const rel = off - req.offset;
        if (!(rel >= 0 && rel + n <= req.length)) return this.fail(`data chunk at ${off} (+${n}) outside the read`);
        if (!this.cover(rel, rel + n)) return;
        this.payloadLeft = 0;
        this.simpleData = false;
        this.dataPos = rel;
        this.dataLeft = n;
        this.fieldHave = 0;
        this.state = S_DATA;
        return;
      }
      case F_HOLE: {
        const off = this.offsetField(0);
        const n = f.readUInt32BE(8);
        const rel = off - req.offset;
        if (n === 0) return this.fail("hole chunk of size 0");
        if (!(rel >= 0 && rel + n <= req.length)) return this.fail(`hole chunk at ${off} (+${n}) outside the read`);
        if (!this.cover(rel, rel + n)) return;
        req.into!.fill(0, rel, rel + n);
        this.fieldHave = 0;
        return this.endChunk();
      }
      case F_BS_CONTEXT: {
        const id = f.readUInt32BE(0);
        if (!this.opts.contextIds.has(id)) return this.fail(`block status for unknown context id ${id}`);
        if (req.status!.has(id)) return this.fail(`block status for context id ${id} sent twice`);
        this.descOut = [];
        req.status!.set(id, this.descOut);
        this.descLeft = this.payloadLeft / 8;
        this.payloadLeft = 0;
        this.descSum = 0;
        this.fieldHave = 0;
        this.state = S_DESC;
        return;
      }
      case F_ERR_HEAD: {
        const errno = f.readUInt32BE(0);
        const msgLen = f.readUInt16BE(4);
        const tail = this.chunkType === ReplyType.ERROR_OFFSET ? 8 : 0;
        if (errno === 0) return this.fail("error chunk with error 0");
        if (msgLen + tail > this.payloadLeft) return this.fail(`error chunk message length ${msgLen} exceeds the chunk`);
        if (req.errno === 0) {
          req.errno = errno;
          req.errorMessage = "";
        }
        this.errMsgLen = msgLen;
        if (msgLen > 0) return this.needField(Math.min(msgLen, MAX_STRING_LEN), F_ERR_MSG);
        return this.afterErrMsg();
      }
      case F_ERR_MSG: {
        if (req.errno !== 0 && req.errorMessage === "") {
          req.errorMessage = sanitize(f.toString("utf8", 0, this.fieldNeed));
        }
        // A message over the string limit (a broken server): skip the rest of the chunk,
        // including an ERROR_OFFSET's offset.
        if (this.errMsgLen > this.fieldNeed) return this.skipRest();
        return this.afterErrMsg();
      }
      case F_ERR_OFFSET: {
        const off = this.offsetField(0);
        if (req.errorOffset < 0) req.errorOffset = off;
        return this.skipRest();
      }
    }
  }

  private afterErrMsg(): void {
    if (this.chunkType === ReplyType.ERROR_OFFSET) return this.needField(8, F_ERR_OFFSET);
    this.skipRest();
  }

  private skipRest(): void {
    this.fieldHave = 0;
    if (this.payloadLeft > 0) {
      this.skipLeft = this.payloadLeft;
      this.payloadLeft = 0;
      this.state = S_SKIP;
    } else this.endChunk();
  }

  private offsetField(at: number): number {
    const hi = this.field.readUInt32BE(at);
    const lo = this.field.readUInt32BE(at + 4);
    return hi < 0x200000 ? hi * TWO32 + lo : Infinity;
  }

  /** Records `[s, e)` (relative) as covered; fails on overlap. */
  private cover(s: number, e: number): boolean {
    const r = this.req!.ranges!;
    const n = r.length;
    if (n === 0 || s >= r[n - 1]!) {
      if (n > 0 && s === r[n - 1]) r[n - 1] = e;
      else r.push(s, e);
      return true;
    }
    // Out of order: find the insertion point.
    let i = 0;
    while (i < n && r[i]! < e) {
      if (r[i + 1]! > s) {
        this.fail(`overlapping read chunks at relative offset ${s}`);
        return false;
      }
      i += 2;
    }
    r.splice(i, 0, s, e);
    // Merge neighbours.
    for (let j = Math.max(0, i - 2); j + 2 < r.length; ) {
      if (r[j + 1] === r[j + 2]) r.splice(j + 1, 2);
      else j += 2;
    }
    return true;
  }

  private descriptor(len: number, flags: number): boolean {
    const req = this.req!;
    if (len === 0) {
      this.fail("block status descriptor of length 0");
      return false;
    }
    this.descSum += len;
    if (this.descSum > req.length) {
      this.fail(`block status descriptors cover ${this.descSum} bytes, more than the ${req.length} requested`);
      return false;
    }
    this.descOut.push(len, flags);
    this.descLeft--;
    return true;
  }

  private afterData(): void {
    if (this.simpleData) {
      this.simpleData = false;
      this.req!.ranges!.push(0, this.req!.length);
      this.finish();
    } else this.endChunk();
  }

  private endChunk(): void {
    this.state = S_HEADER;
    if (this.chunkFlags & REPLY_FLAG_DONE) {
      this.chunkFlags = 0;
      this.finish();
    } else this.req = null;
  }

  private finish(): void {
    const req = this.req!;
    this.req = null;
    this.state = S_HEADER;
    if (req.command === Cmd.READ && req.errno === 0 && req.length > 0) {
      const r = req.ranges!;
      if (!(r.length === 2 && r[0] === 0 && r[1] === req.length)) {
        const got = rangesTotal(r);
        return this.fail(`read reply at offset ${req.offset} ended with ${got} of ${req.length} bytes`);
      }
    }
    this.handler.complete(req);
  }
}

function rangesTotal(r: number[]): number {
  let t = 0;
  for (let i = 0; i < r.length; i += 2) t += r[i + 1]! - r[i]!;
  return t;
}

/** Server messages are shown to users: keep them on one line and printable. */
function sanitize(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\x00-\x1f\x7f]+/g, " ").trim();
}
