/**
 * A backup set's folder in a bucket as a `BackupTarget`: stream files are multipart uploads
 * (src/storage/s3/multipart-file.ts), small files single PUTs checked by Content-MD5. No raw
 * images at positions (`createImage` is absent, as for a zip archive): raw disks are streamed.
 * `abortAll` (a signal) aborts every upload under way.
 */
import { join } from "node:path";
import { TargetExistsError, type BackupTarget, type TargetFile } from "../target.js";
import { parseObjectPath, shownPath } from "../object-path.js";
import { MultipartFile, type MultipartOptions } from "./multipart-file.js";
import { ObjectExistsError, stat, writeObject } from "./store.js";

export class ObjectTarget implements BackupTarget {
  readonly isArchive = false;
  private readonly open = new Set<MultipartFile>();
  constructor(
    readonly directory: string,
    private readonly options: MultipartOptions = {},
  ) {}

  private async refuseExisting(path: string, replace: boolean | undefined): Promise<void> {
    if (replace) return;
    const found = await stat(path).then(
      (s) => s.isFile(),
      (e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? false : Promise.reject(e)),
    );
    if (found) throw new TargetExistsError(shownPath(path));
  }

  async createFile(name: string, options: { replace?: boolean } = {}): Promise<TargetFile> {
    const path = join(this.directory, name);
    await this.refuseExisting(path, options.replace);
    const { bucket, key } = parseObjectPath(path)!;
    const file = await MultipartFile.create(bucket, key, this.options);
    this.open.add(file);
    const forget = () => this.open.delete(file);
    return {
      location: file.location,
      write: (chunk) => file.write(chunk),
      commit: () => file.commit().finally(forget),
      abort: () => file.abort().finally(forget),
    };
  }

  async putFile(name: string, data: string | Uint8Array, options: { replace?: boolean } = {}): Promise<void> {
    const path = join(this.directory, name);
    try {
      await writeObject(path, data, options.replace ?? false);
    } catch (e) {
      if (e instanceof ObjectExistsError) throw new TargetExistsError(shownPath(path));
      throw e;
    }
  }

  /** Aborts every upload under way (interrupted run). */
  async abortAll(): Promise<void> {
    await Promise.allSettled([...this.open].map((f) => f.abort()));
    this.open.clear();
  }

  async close(): Promise<void> {}
}
