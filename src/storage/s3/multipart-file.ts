/**
 * A file written front to back as one multipart upload: bytes fill a part buffer; a full part
 * goes up (Content-MD5: the server checks every part) while the next fills; at most
 * `inFlight` parts are under way, so memory is (inFlight + 1) × part size whatever the file's
 * size. Parts start at 8 MiB and grow with the part number (S3 allows 10 000 parts), reaching
 * 64 MiB for files past ~55 GiB: the largest file is ~490 GiB. `commit` completes the upload:
 * only then does the object exist under its name, whole. `abort` aborts it; a process killed
 * before leaves an upload under way, listed as `<name>.partial` (src/storage/s3/store.ts).
 */
import type { TargetFile } from "../target.js";
import { shownPath } from "../object-path.js";
import { s3 } from "./client.js";
import { objectError } from "./errors.js";
import { contentMd5 } from "./store.js";

const MiB = 1024 * 1024;
const MAX_PARTS = 10_000;

/** Part `n`'s size (1-based): 8 MiB for the first 1000, then 16, 32, and 64 MiB from part 3001. */
export function partSizeOf(n: number): number {
  if (n <= 1000) return 8 * MiB;
  if (n <= 2000) return 16 * MiB;
  if (n <= 3000) return 32 * MiB;
  return 64 * MiB;
}

export interface MultipartOptions {
  /** Parts uploading at once (default 3). */
  inFlight?: number;
  /** Part sizes by part number (tests use small ones). */
  partSize?: (n: number) => number;
}

export class MultipartFile implements TargetFile {
  readonly location: string;
  private readonly partSize: (n: number) => number;
  private readonly inFlight: number;
  private part: Buffer;
  private filled = 0;
  private partNumber = 1;
  private readonly done: { PartNumber: number; ETag: string }[] = [];
  private readonly uploading = new Set<Promise<void>>();
  private failure: Error | null = null;
  private ended = false;
  private readonly spare: Buffer[] = [];

  private constructor(
    private readonly bucket: string,
    private readonly key: string,
    private readonly uploadId: string,
    options: MultipartOptions,
  ) {
    this.location = `${shownPath(`s3://${bucket}/${key}`)} (upload under way)`;
    this.partSize = options.partSize ?? partSizeOf;
    this.inFlight = Math.max(1, options.inFlight ?? 3);
    this.part = Buffer.allocUnsafe(this.partSize(1));
  }

  static async create(bucket: string, key: string, options: MultipartOptions = {}): Promise<MultipartFile> {
    const { sdk, client } = await s3();
    try {
      const { UploadId } = await client.send(new sdk.CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
      return new MultipartFile(bucket, key, UploadId!, options);
    } catch (e) {
      throw objectError(e, `s3://${bucket}/${key}`, "start the upload of");
    }
  }

  private get path(): string {
    return `s3://${this.bucket}/${this.key}`;
  }

  /** Writes one after another: bytes land in the order of the calls. */
  private queue: Promise<void> = Promise.resolve();

  /** Copies `chunk` into part buffers (the caller may reuse it once this resolves). */
  write(chunk: Uint8Array): Promise<void> {
    const next = this.queue.then(() => this.append(chunk));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async append(chunk: Uint8Array): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.ended) throw new Error(`${this.location}: written after it ended`);
    let at = 0;
    while (at < chunk.length) {
      const take = Math.min(chunk.length - at, this.part.length - this.filled);
      this.part.set(chunk.subarray(at, at + take), this.filled);
      this.filled += take;
      at += take;
      if (this.filled === this.part.length) await this.sendPart();
    }
  }

  /** Sends the filled part; waits while `inFlight` parts are under way. */
  private async sendPart(): Promise<void> {
    if (this.partNumber > MAX_PARTS) throw (this.failure = new Error(`Unable to write [${shownPath(this.path)}]: larger than one object can hold (${MAX_PARTS} parts)`));
    const number = this.partNumber++;
    const body = this.part.subarray(0, this.filled);
    const full = this.part;
    const sending = this.uploadPart(number, body).then(
      () => {
        if (this.spare.length < this.inFlight) this.spare.push(full);
      },
      (e: Error) => {
        this.failure ??= e;
      },
    );
    this.uploading.add(sending);
    void sending.finally(() => this.uploading.delete(sending));
    const nextSize = this.partSize(this.partNumber);
    const reuse = this.spare.findIndex((b) => b.length === nextSize);
    this.part = reuse >= 0 ? this.spare.splice(reuse, 1)[0]! : Buffer.allocUnsafe(nextSize);
    this.filled = 0;
    while (this.uploading.size >= this.inFlight) await Promise.race(this.uploading);
    if (this.failure) throw this.failure;
  }

  private async uploadPart(number: number, body: Buffer): Promise<void> {
    const { sdk, client } = await s3();
    try {
      const r = await client.send(new sdk.UploadPartCommand({ Bucket: this.bucket, Key: this.key, UploadId: this.uploadId, PartNumber: number, Body: body, ContentLength: body.length, ContentMD5: contentMd5(body) }));
      this.done.push({ PartNumber: number, ETag: r.ETag! });
    } catch (e) {
      throw objectError(e, this.path, `upload part ${number} of`);
    }
  }

  /** The last part, then completion: the object appears whole under its name. */
  async commit(): Promise<void> {
    if (this.ended) throw new Error(`${this.location}: already closed`);
    await this.queue;
    if (this.filled > 0 || this.partNumber === 1) await this.sendPart();
    await Promise.all(this.uploading);
    this.ended = true;
    if (this.failure) {
      await this.abortUpload();
      throw this.failure;
    }
    const { sdk, client } = await s3();
    const parts = [...this.done].sort((a, b) => a.PartNumber - b.PartNumber);
    try {
      await client.send(new sdk.CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: this.key, UploadId: this.uploadId, MultipartUpload: { Parts: parts } }));
    } catch (e) {
      await this.abortUpload();
      throw objectError(e, this.path, "complete the upload of");
    } finally {
      this.spare.length = 0;
    }
  }

  async abort(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    await Promise.allSettled(this.uploading);
    await this.abortUpload();
  }

  private async abortUpload(): Promise<void> {
    const { sdk, client } = await s3();
    await client.send(new sdk.AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.key, UploadId: this.uploadId })).catch(() => undefined);
  }
}
