/**
 * One mapping: the chain's backend served by our NBD server on `-l`/`-p` as `-e`, writes going
 * into a copy-on-write overlay (src/nbd/cow-backend.ts; `-r`: none, read-only), and teardown
 * that leaves nothing behind (server closed, files closed, temp directory gone; with `verbose`
 * the server log, with `-H` its hexdumps, is kept outside it). No nbdkit in between: one hop
 * less for every request (README, "virtnbdmap and live-restore reads").
 */
import { randomBytes } from "node:crypto";
import { createWriteStream, type WriteStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NbdServer } from "../nbd/server.js";
import type { NbdBackend } from "../nbd/backend.js";
import { CowBackend } from "../nbd/cow-backend.js";
import { ChainBackend } from "../chain/chain-backend.js";
import { DecodedCache } from "../chain/decoded-cache.js";
import type { MappedChain } from "../chain/chain-loader.js";
import { hexdump } from "./hexdump.js";
import { cowBlockSize } from "./options.js";

export interface SessionOptions {
  exportName: string;
  listenAddress: string;
  port: string;
  /** `-b`: the overlay's block size (a partial write fills the rest of its block from the backup). */
  blocksize: string;
  readOnly: boolean;
  /** Keep the server log (outside the temp directory). */
  verbose: boolean;
  /** Append a hexdump of every read served to the server log. */
  hexdump: boolean;
  /** Parent of the temp directory (default: the OS temp dir). */
  tmpRoot?: string;
  /** Decoded lz4 frames kept in memory (default: ChainBackend's). */
  cacheBytes?: number;
  /** Disk space for decoded lz4 frames of compressed files (DecodedCache); 0 or unset: none. */
  decodedCacheBytes?: number;
  /** Where the decoded-frame cache's scratch file is made (default: cacheDirectory()). */
  decodedCacheDir?: string;
  /** Diagnostics of the NBD server (connection and protocol errors). */
  log?: (message: string) => void;
}

export class MapSession {
  private server: NbdServer | null = null;
  private overlay: CowBackend | null = null;
  private dump: WriteStream | null = null;
  private decodedCache: DecodedCache | null = null;
  private stopped = false;

  private constructor(
    readonly chain: MappedChain,
    readonly opts: SessionOptions,
    readonly tmpDir: string,
    readonly serverLog: string,
  ) {}

  /** Creates the temp directory; nothing runs yet. */
  static async create(chain: MappedChain, opts: SessionOptions): Promise<MapSession> {
    const root = opts.tmpRoot ?? tmpdir();
    const dir = await mkdtemp(join(root, "virtnbdmap."));
    const log = opts.verbose ? join(root, `virtnbdmap.server.${randomBytes(4).toString("hex")}.log`) : join(dir, "server.log");
    return new MapSession(chain, opts, dir, log);
  }

  /** Open NBD client connections. */
  get clientConnections(): number {
    return this.server?.connectionCount ?? 0;
  }

  /** Resolves when at most `n` client connections are left (at once when that is so). */
  clientsAtMost(n: number): Promise<void> {
    return this.server?.whenConnectionsAtMost(n) ?? Promise.resolve();
  }

  /** The decoded-frame cache of a compressed chain (null: plain chain, or switched off). */
  get decodedFrames(): DecodedCache | null {
    return this.decodedCache;
  }

  /** The overlay's block size (null: read-only, no overlay). */
  get overlayBlockBytes(): number | null {
    return this.overlay?.blockBytes ?? null;
  }

  private async chainBackend(): Promise<ChainBackend> {
    const o = this.opts;
    if (o.hexdump || o.verbose) this.dump = createWriteStream(this.serverLog, { flags: "a" });
    const dump = o.hexdump ? this.dump : null;
    if (o.decodedCacheBytes && this.chain.members.some((m) => m.compressed)) {
      this.decodedCache = await DecodedCache.create({
        maxBytes: o.decodedCacheBytes,
        ...(o.decodedCacheDir !== undefined ? { dir: o.decodedCacheDir } : {}),
      });
    }
    return new ChainBackend(this.chain.index, this.chain.sources, {
      ...(o.cacheBytes !== undefined ? { cacheBytes: o.cacheBytes } : {}),
      ...(this.decodedCache ? { decodedCache: this.decodedCache } : {}),
      ...(dump ? { onRead: (off: number, data: Buffer) => void dump.write(hexdump(off, data)) } : {}),
      description: this.chain.members.map((m) => m.given).join(","),
    });
  }

  /** Serves the export; resolves once the server listens (throws when it cannot, e.g. the port is taken). */
  async start(): Promise<void> {
    const o = this.opts;
    const chain = await this.chainBackend();
    let exported: NbdBackend = chain;
    if (!o.readOnly) {
      this.overlay = await CowBackend.create(chain, { dir: this.tmpDir, blockBytes: cowBlockSize(o.blocksize, this.chain.index.size) });
      exported = this.overlay;
    }
    const dump = this.dump;
    const log = (m: string) => {
      o.log?.(m);
      dump?.write(`${new Date().toISOString()} ${m}\n`);
    };
    this.server = new NbdServer({ exports: { [o.exportName]: exported }, defaultExport: o.exportName, log });
    await this.server.listen({ port: Number(o.port), host: o.listenAddress });
  }

  /** Closes the server, the overlay and the files, removes the temp directory. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.server?.close();
    await this.overlay?.close();
    await this.decodedCache?.close();
    await this.chain.close();
    if (this.dump) await new Promise<void>((r) => this.dump!.end(() => r()));
    await rm(this.tmpDir, { recursive: true, force: true });
  }
}
