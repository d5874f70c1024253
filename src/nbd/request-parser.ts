/**
 * Server side of the transmission phase: a synchronous parser of request headers and WRITE
 * payloads. A WRITE payload larger than `maxPayload` is skipped (never buffered) and the
 * request is handed on marked `oversized`. The handler can stop the parser after any request
 * (back-pressure): `feed` then returns how far it got.
 */
import { Cmd, readU64, REQUEST_HEADER_LEN, REQUEST_MAGIC } from "./protocol.js";

export interface ParsedRequest {
  flags: number;
  type: number;
  cookieHi: number;
  cookieLo: number;
  /** Infinity when beyond 2^53 (always out of range). */
  offset: number;
  length: number;
  /** WRITE: the payload (exactly `length` bytes), else null. */
  payload: Buffer | null;
  /** The pooled buffer behind `payload`, to give back when done. */
  backing: Buffer | null;
  /** WRITE payload was over the limit and has been discarded. */
  oversized: boolean;
}

export interface RequestHandler {
  /** A buffer of at least `length` bytes for a WRITE payload. */
  allocPayload(length: number): Buffer;
  /** A complete request. Return false to stop parsing after it (resume with `feed`). */
  onRequest(req: ParsedRequest): boolean;
  /** Fatal framing error (bad magic): the connection must be closed. */
  onError(message: string): void;
}

const S_HEADER = 0;
const S_PAYLOAD = 1;
const S_SKIP = 2;
const S_DEAD = 3;

export class RequestParser {
  private state = S_HEADER;
  private readonly hdr = Buffer.alloc(REQUEST_HEADER_LEN);
  private have = 0;
  private cur: ParsedRequest | null = null;
  private left = 0;
  private pos = 0;

  constructor(
    private readonly handler: RequestHandler,
    private readonly maxPayload: number,
  ) {}

  /** Stops for good (after NBD_CMD_DISC or an error). */
  stop(): void {
    this.state = S_DEAD;
  }

  get stopped(): boolean {
    return this.state === S_DEAD;
  }

  /** Consumes `buf[start..end)`; returns the index where it stopped (== end unless paused). */
  feed(buf: Buffer, start: number, end: number): number {
    while (start < end) {
      switch (this.state) {
        case S_HEADER: {
          const k = Math.min(REQUEST_HEADER_LEN - this.have, end - start);
          buf.copy(this.hdr, this.have, start, start + k);
          this.have += k;
          start += k;
          if (this.have < REQUEST_HEADER_LEN) break;
          this.have = 0;
          const h = this.hdr;
          const magic = h.readUInt32BE(0);
          if (magic !== REQUEST_MAGIC) {
            this.state = S_DEAD;
            this.handler.onError(`bad request magic 0x${magic.toString(16).padStart(8, "0")}`);
            return end;
          }
          const req: ParsedRequest = {
            flags: h.readUInt16BE(4),
            type: h.readUInt16BE(6),
            cookieHi: h.readUInt32BE(8),
            cookieLo: h.readUInt32BE(12),
            offset: readU64(h, 16),
            length: h.readUInt32BE(24),
            payload: null,
            backing: null,
            oversized: false,
          };
          if (req.type === Cmd.WRITE && req.length > 0) {
            this.cur = req;
            this.left = req.length;
            if (req.length > this.maxPayload) {
              req.oversized = true;
              this.state = S_SKIP;
            } else {
              const b = this.handler.allocPayload(req.length);
              req.backing = b;
              req.payload = b.subarray(0, req.length);
              this.pos = 0;
              this.state = S_PAYLOAD;
            }
            break;
          }
          if (!this.emit(req)) return start;
          break;
        }
        case S_PAYLOAD: {
          const k = Math.min(this.left, end - start);
          buf.copy(this.cur!.payload!, this.pos, start, start + k);
          this.pos += k;
          this.left -= k;
          start += k;
          if (this.left === 0) {
            const req = this.cur!;
            this.cur = null;
            this.state = S_HEADER;
            if (!this.emit(req)) return start;
          }
          break;
        }
        case S_SKIP: {
          const k = Math.min(this.left, end - start);
          this.left -= k;
          start += k;
          if (this.left === 0) {
            const req = this.cur!;
            this.cur = null;
            this.state = S_HEADER;
            if (!this.emit(req)) return start;
          }
          break;
        }
        default:
          return end;
      }
    }
    return start;
  }

  private emit(req: ParsedRequest): boolean {
    const go = this.handler.onRequest(req);
    return go && this.state !== S_DEAD;
  }
}
