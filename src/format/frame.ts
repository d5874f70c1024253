/** Frame headers of the stream format: `"%s %016x %016x\r\n"`, exactly 40 bytes. */
import { StreamFormatError } from "./errors.js";

export const FRAME_LEN = 40;
export const TERM = Buffer.from("\r\n", "latin1");
export const FRAME_KINDS = ["meta", "data", "zero", "stop", "comp"] as const;
export type FrameKind = (typeof FRAME_KINDS)[number];

export interface FrameHeader {
  kind: FrameKind;
  start: number;
  length: number;
}

function hex16(n: number): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`frame field out of range: ${n}`);
  return n.toString(16).padStart(16, "0");
}

/** Writes a header into `target` at `at`; returns the position after it. */
export function encodeHeader(kind: FrameKind, start: number, length: number, target: Buffer, at = 0): number {
  target.write(`${kind} ${hex16(start)} ${hex16(length)}\r\n`, at, FRAME_LEN, "latin1");
  return at + FRAME_LEN;
}

const HEX = /^[0-9a-fA-F]{1,16}$/;

function parseHex(field: string, what: string, file: string, offset: number): number {
  const trimmed = field.trim(); // the original's int(x, 16) ignores surrounding whitespace (the CR LF)
  if (!HEX.test(trimmed)) throw new StreamFormatError(file, offset, `invalid frame header: ${what} is not hex: ${JSON.stringify(field)}`);
  const value = parseInt(trimmed, 16);
  if (!Number.isSafeInteger(value)) throw new StreamFormatError(file, offset, `invalid frame header: ${what} too large`);
  return value;
}

/**
 * Parses the 40 bytes at `buf[at..]`. Accepts what the original accepts (upper-case hex,
 * a length field that is not exactly 16 digits) but only the known frame kinds.
 */
export function parseHeader(buf: Uint8Array, at: number, file: string, fileOffset: number): FrameHeader {
  if (buf.length - at < FRAME_LEN) {
    throw new StreamFormatError(file, fileOffset, `truncated frame header (${buf.length - at} of ${FRAME_LEN} bytes)`);
  }
  const text = Buffer.from(buf.buffer, buf.byteOffset + at, FRAME_LEN).toString("latin1");
  const first = text.indexOf(" ");
  const second = first < 0 ? -1 : text.indexOf(" ", first + 1);
  if (second < 0) throw new StreamFormatError(file, fileOffset, `invalid frame header: ${JSON.stringify(text)}`);
  const kind = text.slice(0, first);
  if (!(FRAME_KINDS as readonly string[]).includes(kind)) {
    throw new StreamFormatError(file, fileOffset, `unknown frame kind ${JSON.stringify(kind)}`);
  }
  return {
    kind: kind as FrameKind,
    start: parseHex(text.slice(first + 1, second), "start", file, fileOffset),
    length: parseHex(text.slice(second + 1), "length", file, fileOffset),
  };
}
