/**
 * Per-frame integrity records, `<datafile>.integrity` (ours; the original ignores the file):
 * kind, disk offset, length and the Adler-32 of every data frame's stored payload, plus a
 * CRC of the metadata. Restore and verify use it to refuse a damaged frame and name its disk
 * offset even in sets without `.chksum` (uncompressed payloads carry no checksum of their
 * own; frame headers carry none at all). The payload sums come from the same hashing pass
 * that produces the `.chksum` value.
 *
 *   virtnbd-integrity 2
 *   meta <crc32 of the meta JSON>
 *   data <start> <length> <adler32 of the stored payload>        (hex)
 *   zero <start> <length>
 *   end <frame count> <crc32 of all lines above>
 */
import { crc32 } from "node:zlib";
import { native } from "../native/index.js";

const HEADER = "virtnbd-integrity 2";

export interface IntegrityFrame {
  kind: "data" | "zero";
  start: number;
  length: number;
  /** Adler-32 of the stored payload (data frames). */
  sum: number;
}

export interface IntegrityRecord {
  metaCrc: number;
  frames: IntegrityFrame[];
}

const hex = (n: number) => n.toString(16);

/**
 * Builds the record while a stream is written (the StreamWriter calls it). Calls are queued
 * in order, so payload sums still being computed on the pool land in the right line.
 */
export class IntegrityRecorder {
  private readonly lines: string[] = [HEADER];
  private frames = 0;
  private open: { start: number; length: number } | null = null;
  private chain: Promise<void> = Promise.resolve();

  private then(step: () => void | Promise<void>): void {
    this.chain = this.chain.then(step);
  }

  meta(json: Uint8Array): void {
    const line = `meta ${hex(crc32(json) >>> 0)}`;
    this.then(() => void this.lines.push(line));
  }
  beginData(start: number, length: number): void {
    this.then(() => void (this.open = { start, length }));
  }
  /** `payloadSum`: Adler-32 of the frame's stored payload bytes. */
  endData(payloadSum: Promise<number>): void {
    this.then(async () => {
      const o = this.open!;
      this.lines.push(`data ${hex(o.start)} ${hex(o.length)} ${hex((await payloadSum) >>> 0)}`);
      this.frames++;
      this.open = null;
    });
  }
  zero(start: number, length: number): void {
    this.then(() => {
      this.lines.push(`zero ${hex(start)} ${hex(length)}`);
      this.frames++;
    });
  }
  async text(): Promise<string> {
    await this.chain;
    const body = this.lines.join("\n") + "\n";
    return `${body}end ${this.frames} ${hex(crc32(body) >>> 0)}\n`;
  }
}

export class IntegrityFileError extends Error {}

export function parseIntegrity(text: string, file: string): IntegrityRecord {
  const bad = (why: string): never => {
    throw new IntegrityFileError(`${file}: ${why}`);
  };
  const endAt = text.lastIndexOf("end ");
  if (!text.startsWith(`${HEADER}\n`) || endAt < 0) bad(text.startsWith("virtnbd-integrity ") ? "unsupported integrity record version" : "not an integrity record");
  const body = text.slice(0, endAt);
  const [, count, sum] = text.slice(endAt).trim().split(" ");
  if (sum !== hex(crc32(body) >>> 0)) bad("the record itself is damaged (checksum mismatch)");
  const lines = body.trimEnd().split("\n").slice(1);
  const metaLine = lines.shift() ?? "";
  if (!metaLine.startsWith("meta ")) bad("no meta line");
  const frames = lines.map((l): IntegrityFrame => {
    const [kind, s, len, c] = l.split(" ");
    if ((kind !== "data" && kind !== "zero") || !s || !len) return bad(`malformed line: ${l}`);
    return { kind, start: parseInt(s, 16), length: parseInt(len, 16), sum: c ? parseInt(c, 16) : 0 };
  });
  if (String(frames.length) !== count) bad(`lists ${count} frames, holds ${frames.length}`);
  return { metaCrc: parseInt(metaLine.slice(5), 16), frames };
}

/**
 * Checks a stream's frames, in order, against its record. Payload sums are checked when the
 * caller feeds the stored payload (`storedPayload`: uncompressed streams, where pieces are the
 * stored bytes); lz4 payloads are covered by lz4's own checksums instead.
 */
export class IntegrityChecker {
  private index = 0;
  private sum = 1;
  private current: IntegrityFrame | null = null;

  constructor(
    private readonly record: IntegrityRecord,
    private readonly file: string,
    private readonly storedPayload = true,
  ) {}

  meta(json: Uint8Array): void {
    if ((crc32(json) >>> 0) !== this.record.metaCrc) throw new IntegrityFileError(`${this.file}: metadata does not match its integrity record`);
  }

  frame(kind: "data" | "zero", start: number, length: number): void {
    const want = this.record.frames[this.index++];
    if (!want || want.kind !== kind || want.start !== start || want.length !== length) {
      const expected = want ? `${want.kind} at disk offset ${want.start} (+${want.length})` : "no more frames";
      throw new IntegrityFileError(`${this.file}: frame ${this.index - 1} is ${kind} at disk offset ${start} (+${length}), the integrity record says ${expected}: damaged frame header`);
    }
    this.current = kind === "data" ? want : null;
    this.sum = 1;
  }

  data(chunk: Uint8Array): void {
    if (this.storedPayload) this.sum = native.adler32(this.sum, chunk);
  }

  endData(): void {
    const f = this.current!;
    if (this.storedPayload && (this.sum >>> 0) !== f.sum) {
      throw new IntegrityFileError(`${this.file}: damaged data in the frame at disk offset ${f.start} (+${f.length}): checksum mismatch`);
    }
    this.current = null;
  }

  end(): void {
    if (this.index !== this.record.frames.length) {
      throw new IntegrityFileError(`${this.file}: stream ends after ${this.index} frames, the integrity record lists ${this.record.frames.length}`);
    }
  }
}
