/** Backup files in a directory: `<name>.partial`, then fsync and a no-replace move into place. */
import { mkdir, open, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import type { BackupTarget, TargetEntry, TargetFile, TargetImage } from "./target.js";
import { DirectFileWriter } from "./direct-file.js";
import { fileError, moveInto, partialPath, writeFileDurably } from "./durable.js";
import { EarlyWriteback } from "./writeback.js";
import { writeFullyAt } from "../util/write-fully.js";

/** How a partial file's bytes reach the disk. */
interface FileBody {
  write(chunk: Uint8Array): Promise<void>;
  /** Present when the body copies the bytes anyway and can sum them on the way. */
  writeSummed?(chunk: Uint8Array): Promise<number>;
  /** Everything written and durable; the descriptor closed (also when it fails). */
  finish(): Promise<void>;
  /** Closes the descriptor once writes under way are over; the bytes stay as they are. */
  abandon(): Promise<void>;
}

/** O_DIRECT through aligned staging buffers: no page cache (see direct-file.ts). */
class DirectBody implements FileBody {
  constructor(private readonly file: DirectFileWriter) {}
  write(chunk: Uint8Array): Promise<void> {
    return this.file.write(chunk);
  }
  writeSummed(chunk: Uint8Array): Promise<number> {
    return this.file.writeSummed(chunk);
  }
  async finish(): Promise<void> {
    try {
      await this.file.finish();
      await this.file.sync();
    } finally {
      await this.file.close();
    }
  }
  async abandon(): Promise<void> {
    await this.file.close().catch(() => undefined);
  }
}

/**
 * Positional writes through the page cache, written back early: stream files on filesystems
 * without O_DIRECT (appended), and raw images (written at the disk's offsets, in disk order).
 */
class BufferedBody implements FileBody {
  /** Next append position: writes are positional, so several may be in flight in order. */
  private position = 0;
  private readonly writeback: EarlyWriteback;
  constructor(private readonly fh: FileHandle) {
    this.writeback = new EarlyWriteback(fh.fd);
  }
  write(chunk: Uint8Array): Promise<void> {
    const base = this.position;
    this.position += chunk.length;
    return this.writeAt(chunk, base);
  }
  /** Every write below `position` has been issued before this one. */
  async writeAt(chunk: Uint8Array, position: number): Promise<void> {
    await this.writeback.advance(position);
    await writeFullyAt(this.fh, chunk, position);
  }
  async finish(): Promise<void> {
    await this.writeback.drain(); // never on a closed descriptor
    try {
      await this.fh.sync();
    } finally {
      await this.fh.close();
    }
  }
  async abandon(): Promise<void> {
    await this.writeback.drain();
    await this.fh.close().catch(() => undefined);
  }
}

/** Written as `.partial`; `commit` makes it durable and moves it to its real name. */
class PartialEntry implements TargetEntry {
  private done = false;
  constructor(
    private readonly body: FileBody,
    readonly location: string,
    private readonly finalPath: string,
    private readonly replace: boolean,
  ) {}

  async commit(): Promise<void> {
    if (this.done) throw new Error(`${this.location}: already closed`);
    this.done = true;
    try {
      await this.body.finish();
    } catch (e) {
      throw fileError(e, this.location);
    }
    await moveInto(this.location, this.finalPath, this.replace);
  }

  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.body.abandon();
  }
}

class PartialFile extends PartialEntry implements TargetFile {
  readonly writeSummed?: (chunk: Uint8Array) => Promise<number>;
  constructor(
    private readonly stream: FileBody,
    location: string,
    finalPath: string,
    replace: boolean,
  ) {
    super(stream, location, finalPath, replace);
    const summed = stream.writeSummed?.bind(stream);
    if (summed) {
      this.writeSummed = async (chunk) => {
        try {
          return await summed(chunk);
        } catch (e) {
          throw fileError(e, this.location);
        }
      };
    }
  }

  async write(chunk: Uint8Array): Promise<void> {
    try {
      await this.stream.write(chunk);
    } catch (e) {
      throw fileError(e, this.location);
    }
  }
}

class PartialImage extends PartialEntry implements TargetImage {
  constructor(
    private readonly image: BufferedBody,
    location: string,
    finalPath: string,
    replace: boolean,
  ) {
    super(image, location, finalPath, replace);
  }

  async writeAt(data: Uint8Array, position: number): Promise<void> {
    try {
      await this.image.writeAt(data, position);
    } catch (e) {
      throw fileError(e, this.location);
    }
  }
}

export interface DirectoryTargetOptions {
  /** Write data files with O_DIRECT where the filesystem allows it (default true). */
  directIo?: boolean;
}

export class DirectoryTarget implements BackupTarget {
  readonly isArchive = false;
  private readonly directIo: boolean;
  constructor(
    readonly directory: string,
    options: DirectoryTargetOptions = {},
  ) {
    this.directIo = options.directIo ?? true;
  }

  static async create(directory: string, options: DirectoryTargetOptions = {}): Promise<DirectoryTarget> {
    await mkdir(directory, { recursive: true });
    return new DirectoryTarget(directory, options);
  }

  async createFile(name: string, options: { replace?: boolean } = {}): Promise<TargetFile> {
    const finalPath = join(this.directory, name);
    const partial = partialPath(finalPath);
    const direct = this.directIo ? await DirectFileWriter.create(partial, 0o600) : null;
    const body = direct ? new DirectBody(direct) : new BufferedBody(await open(partial, "w", 0o600));
    return new PartialFile(body, partial, finalPath, options.replace ?? false);
  }

  /** Raw images go through the page cache (sparse: only data is written), never O_DIRECT. */
  async createImage(name: string, size: number, options: { replace?: boolean } = {}): Promise<TargetImage> {
    const finalPath = join(this.directory, name);
    const partial = partialPath(finalPath);
    const fh = await open(partial, "w", 0o600);
    try {
      await fh.truncate(size);
    } catch (e) {
      await fh.close();
      throw fileError(e, partial);
    }
    return new PartialImage(new BufferedBody(fh), partial, finalPath, options.replace ?? false);
  }

  async putFile(name: string, data: string | Uint8Array, options: { replace?: boolean } = {}): Promise<void> {
    await writeFileDurably(join(this.directory, name), data, options.replace ?? false);
  }

  async close(): Promise<void> {}
}
