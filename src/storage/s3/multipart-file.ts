/**
 * A file written front to back as one multipart upload: bytes fill a part buffer; a full part
 * goes up (Content-MD5: the server checks every part) while the next fills; at most
 * `inFlight` parts of a file are under way. Part buffers come from one pool for the whole
 * process (64 MiB: every disk of a run together), so memory does not grow with the file's size
 * or the number of disks; a file waits for a buffer when the pool is spent. Parts start at
 * 8 MiB and grow with the part number (S3 allows 10 000 parts): 16 MiB past ~8 GiB, 32 MiB past
 * ~23 GiB (one fills while one goes up), 64 MiB past ~55 GiB (one at a time: memory before
 * speed); the largest file is ~490 GiB. `commit` completes the upload:
 * only then does the object exist under its name, whole. `abort` aborts it; a process killed
 * before leaves an upload under way, listed as `<name>.partial` (src/storage/s3/store.ts).
 */
import { BufferPool } from "../../util/buffer-pool.js";
import type { TargetFile } from "../target.js";
import { shownPath } from "../object-path.js";
import { s3 } from "./client.js";
import { objectError } from "./errors.js";
import { contentMd5 } from "./store.js";

const MiB = 1024 * 1024;
const MAX_PARTS = 10_000;

/** Part buffers of every upload of the process. */
const PART_POOL = BufferPool.budget(64 * MiB);

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
  /** Where part buffers come from (default: the process's 64 MiB pool). */
  pool?: BufferPool;
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
  private readonly pool: BufferPool;
  /** The buffer `part` views (its size class). */
  private buffer: Buffer | null;

  private constructor(
    private readonly bucket: string,
    private readonly key: string,
    private readonly uploadId: string,
    options: MultipartOptions,
    first: Buffer,
  ) {
    this.location = `${shownPath(`s3://${bucket}/${key}`)} (upload under way)`;
    this.partSize = options.partSize ?? partSizeOf;
    this.inFlight = Math.max(1, options.inFlight ?? 3);
    this.pool = options.pool ?? PART_POOL;
    this.buffer = first;
    this.part = first.subarray(0, this.partSize(1));
  }

  static async create(bucket: string, key: string, options: MultipartOptions = {}): Promise<MultipartFile> {
    const { sdk, client } = await s3();
    let uploadId: string;
    try {
      uploadId = (await client.send(new sdk.CreateMultipartUploadCommand({ Bucket: bucket, Key: key }))).UploadId!;
    } catch (e) {
      throw objectError(e, `s3://${bucket}/${key}`, "start the upload of");
    }
    const first = await (options.pool ?? PART_POOL).acquire((options.partSize ?? partSizeOf)(1));
    return new MultipartFile(bucket, key, uploadId, options, first);
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

  /** Sends the filled part; waits while `inFlight` parts are under way, then for the next buffer. */
  private async sendPart(): Promise<void> {
    if (this.partNumber > MAX_PARTS) throw (this.failure = new Error(`Unable to write [${shownPath(this.path)}]: larger than one object can hold (${MAX_PARTS} parts)`));
    const number = this.partNumber++;
    const body = this.part.subarray(0, this.filled);
    const full = this.buffer!;
    this.buffer = null;
    const sending = this.uploadPart(number, body).then(
      () => undefined,
      (e: Error) => {
        this.failure ??= e;
      },
    );
    this.uploading.add(sending);
    void sending.finally(() => {
      this.uploading.delete(sending);
      this.pool.release(full);
    });
    this.filled = 0;
    while (this.uploading.size >= this.inFlight) await Promise.race(this.uploading);
    if (this.failure) throw this.failure;
    if (this.ended) return;
    const size = this.partSize(this.partNumber);
    this.buffer = await this.pool.acquire(size);
    this.part = this.buffer.subarray(0, size);
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
    this.ended = true;
    if (this.filled > 0 || this.partNumber === 1) await this.sendPart().catch(() => undefined);
    else this.dropBuffer();
    await Promise.all(this.uploading);
    if (this.failure) {
      this.dropBuffer();
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
    }
  }

  private dropBuffer(): void {
    if (this.buffer) this.pool.release(this.buffer);
    this.buffer = null;
  }

  async abort(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    await this.queue;
    this.dropBuffer();
    await Promise.allSettled(this.uploading);
    await this.abortUpload();
  }

  private async abortUpload(): Promise<void> {
    const { sdk, client } = await s3();
    await client.send(new sdk.AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.key, UploadId: this.uploadId })).catch(() => undefined);
  }
}
