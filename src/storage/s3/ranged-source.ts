/**
 * An object read at random positions through ranged GETs, in blocks kept in one cache for the
 * whole process (bounded: `setObjectCacheBytes`, 32 MiB by default). A read at the front of
 * what was read so far (a restore going through a data file, also with several reads under way
 * at once) fetches the next blocks ahead, several GETs at a time, so the link stays busy; a
 * map's random reads fetch only their blocks. Buffers of blocks that left the cache are used
 * again.
 */
import type { RandomAccessSource } from "../../format/source.js";
import type { ObjectPath } from "../object-path.js";
import { s3 } from "./client.js";
import { objectError } from "./errors.js";

const BLOCK = 4 * 1024 * 1024;
const READ_AHEAD = 4;
/** A read this many blocks behind the furthest one read still counts as going forward. */
const FRONT = 8;

/**
 * Blocks by id, least recently used first. A block that left the cache after it arrived gives
 * its buffer to a later fetch (a reader copies out of a block right when it arrives, before any
 * later fetch can write into the buffer: those write only on network events).
 */
class BlockCache {
  private readonly blocks = new Map<string, { data: Promise<Buffer>; bytes: number; arrived: Buffer | null }>();
  private bytes = 0;
  private readonly spare: Buffer[] = [];
  constructor(public budget: number) {}

  get(id: string, size: number, fetch: (into: Buffer) => Promise<Buffer>): Promise<Buffer> {
    const hit = this.blocks.get(id);
    if (hit) {
      this.blocks.delete(id); // most recently used goes last
      this.blocks.set(id, hit);
      return hit.data;
    }
    this.makeRoom(size);
    const reuse = this.spare.findIndex((b) => b.length === size);
    const buffer = reuse >= 0 ? this.spare.splice(reuse, 1)[0]! : Buffer.allocUnsafeSlow(size);
    const entry: { data: Promise<Buffer>; bytes: number; arrived: Buffer | null } = { data: fetch(buffer), bytes: size, arrived: null };
    this.blocks.set(id, entry);
    this.bytes += size;
    entry.data.then(
      (b) => (entry.arrived = b),
      () => {
        if (this.blocks.get(id) === entry) this.remove(id, false);
      },
    );
    return entry.data;
  }

  private remove(id: string, keepBuffer: boolean): void {
    const entry = this.blocks.get(id);
    if (!entry) return;
    this.blocks.delete(id);
    this.bytes -= entry.bytes;
    if (keepBuffer && entry.arrived && this.spare.length < 2) this.spare.push(entry.arrived);
  }

  private makeRoom(size: number): void {
    for (const id of this.blocks.keys()) {
      if (this.bytes + size <= this.budget) return;
      this.remove(id, true);
    }
  }

  dropPrefix(prefix: string): void {
    for (const id of [...this.blocks.keys()]) if (id.startsWith(prefix)) this.remove(id, false);
  }

  get usedBytes(): number {
    return this.bytes;
  }
}

const cache = new BlockCache(32 * 1024 * 1024);

/** The cache's bound for every object read in this process. */
export function setObjectCacheBytes(bytes: number): void {
  cache.budget = Math.max(bytes, 2 * BLOCK);
}

/** Bytes the cache holds now (tests). */
export const objectCacheBytes = (): number => cache.usedBytes;

let nextSourceId = 0;

export class RangedObjectSource implements RandomAccessSource {
  private readonly id = `${nextSourceId++}:`;
  /** The furthest block read so far. */
  private front = -1;
  constructor(
    private readonly where: ObjectPath,
    readonly name: string,
    readonly size: number,
  ) {}

  async read(buf: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    const n = Math.max(0, Math.min(length, this.size - position));
    let done = 0;
    while (done < n) {
      const at = position + done;
      const index = Math.floor(at / BLOCK);
      const block = await this.block(index);
      const from = at - index * BLOCK;
      const take = Math.min(n - done, block.length - from);
      buf.set(block.subarray(from, from + take), offset + done);
      done += take;
    }
    return done;
  }

  private block(index: number): Promise<Buffer> {
    const forward = index >= this.front - FRONT && index <= this.front + 1;
    this.front = Math.max(this.front, index);
    const got = this.fetchBlock(index);
    if (forward) for (let k = 1; k <= READ_AHEAD; k++) if ((index + k) * BLOCK < this.size) void this.fetchBlock(index + k).catch(() => undefined);
    return got;
  }

  private fetchBlock(index: number): Promise<Buffer> {
    const start = index * BLOCK;
    const size = Math.min(BLOCK, this.size - start);
    return cache.get(this.id + index, size, (into) => this.getRange(into, start));
  }

  private async getRange(into: Buffer, start: number): Promise<Buffer> {
    const { sdk, client } = await s3();
    const { bucket, key } = this.where;
    try {
      const got = await client.send(new sdk.GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=${start}-${start + into.length - 1}` }));
      let at = 0;
      for await (const chunk of got.Body as AsyncIterable<Uint8Array>) {
        if (at + chunk.length > into.length) throw new Error(`more bytes than asked for at byte ${start}`);
        into.set(chunk, at);
        at += chunk.length;
      }
      if (at !== into.length) throw new Error(`short read at byte ${start + at}: the object changed while being read`);
      return into;
    } catch (e) {
      throw objectError(e, `s3://${bucket}/${key}`, "read");
    }
  }

  async close(): Promise<void> {
    cache.dropPrefix(this.id);
  }
}
