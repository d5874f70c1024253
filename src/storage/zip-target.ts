/**
 * A backup set written as a zip archive to a stream (stdout): every entry STORED, data
 * entries forced to zip64 and streamed with data descriptors, as the original does.
 * Entries are written one after another; `write` resolves only when the chunk has left
 * through the output, so callers can reuse their buffers without copies.
 */
import { PassThrough, Writable } from "node:stream";
import yazl from "yazl";
import "./yazl-fast-crc.js";
import type { BackupTarget, TargetFile } from "./target.js";

const FILE_MODE = 0o100600;

class ZipEntryFile implements TargetFile {
  private done = false;
  constructor(
    private readonly zip: ZipTarget,
    private readonly input: PassThrough,
    readonly location: string,
  ) {}

  write(chunk: Uint8Array): Promise<void> {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
    const written = this.zip.whenWritten(buf);
    this.input.write(buf);
    return written;
  }

  async commit(): Promise<void> {
    if (this.done) throw new Error(`${this.location}: already closed`);
    this.done = true;
    await new Promise<void>((resolve) => this.input.end(resolve));
    this.zip.entryClosed();
  }

  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    this.input.destroy();
    this.zip.fail(new Error(`zip entry ${this.location} aborted`));
  }
}

export class ZipTarget implements BackupTarget {
  readonly isArchive = true;
  private readonly zip = new yazl.ZipFile();
  private readonly pending = new Map<Buffer, { resolve: () => void; reject: (e: Error) => void }>();
  private openEntry = false;
  private error: Error | null = null;
  private readonly finished: Promise<void>;

  /** `directory` is where the side files of stdout mode live (the working directory). */
  constructor(
    private readonly output: NodeJS.WritableStream,
    readonly directory: string,
  ) {
    const sink = new Writable({
      highWaterMark: 0,
      write: (chunk: Buffer, _enc, cb) => {
        this.output.write(chunk, (err?: Error | null) => {
          const waiter = this.pending.get(chunk);
          if (waiter) {
            this.pending.delete(chunk);
            if (err) waiter.reject(err);
            else waiter.resolve();
          }
          cb(err ?? null);
        });
      },
    });
    this.finished = new Promise((resolve, reject) => {
      sink.on("finish", resolve);
      sink.on("error", (e) => this.fail(e));
      this.zip.on("error", (e: Error) => this.fail(e));
      this.onFail = reject;
    });
    this.finished.catch(() => undefined);
    this.zip.outputStream.pipe(sink);
  }

  private onFail: (e: Error) => void = () => undefined;

  /** Resolves when `buf` (by identity) has been written to the output. */
  whenWritten(buf: Buffer): Promise<void> {
    if (this.error) return Promise.reject(this.error);
    return new Promise((resolve, reject) => this.pending.set(buf, { resolve, reject }));
  }

  fail(e: Error): void {
    if (this.error) return;
    this.error = e;
    for (const w of this.pending.values()) w.reject(e);
    this.pending.clear();
    this.onFail(e);
  }

  entryClosed(): void {
    this.openEntry = false;
  }

  async createFile(name: string): Promise<TargetFile> {
    if (this.error) throw this.error;
    if (this.openEntry) throw new Error("zip target: one entry at a time");
    this.openEntry = true;
    const input = new PassThrough({ highWaterMark: 0 });
    this.zip.addReadStream(input, name, { compress: false, forceZip64Format: true, mtime: new Date(), mode: FILE_MODE });
    return new ZipEntryFile(this, input, `zip entry ${name}`);
  }

  async putFile(name: string, data: string | Uint8Array): Promise<void> {
    if (this.error) throw this.error;
    this.zip.addBuffer(Buffer.from(data), name, { compress: false, mtime: new Date(), mode: FILE_MODE });
  }

  async addDirectory(name: string): Promise<void> {
    this.zip.addEmptyDirectory(name, { mtime: new Date(), mode: 0o40700 });
  }

  /** Writes the central directory and waits until everything left through the output. */
  async close(): Promise<void> {
    if (this.openEntry) throw new Error("zip target: closing with an open entry");
    this.zip.end();
    await this.finished;
    if (this.error) throw this.error;
  }
}
