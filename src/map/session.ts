/**
 * One mapping: the chain's backend served by our NBD server (the helper) on a unix socket in
 * a private temp directory, nbdkit in front of it (src/nbdkit-plugin), and teardown that
 * leaves nothing behind (nbdkit stopped, helper closed, files closed, temp directory gone;
 * with `keepLog` the nbdkit log is kept outside it).
 */
import { randomBytes } from "node:crypto";
import { createWriteStream, type WriteStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NbdServer } from "../nbd/server.js";
import { cowBlockSize, NbdkitProcess, type NbdkitConfig } from "../nbdkit-plugin/nbdkit.js";
import { ChainBackend } from "../chain/chain-backend.js";
import { DecodedCache } from "../chain/decoded-cache.js";
import type { MappedChain } from "../chain/chain-loader.js";
import { hexdump } from "./hexdump.js";

export interface SessionOptions {
  exportName: string;
  listenAddress: string;
  port: string;
  threads: string;
  /** `-b`: nbdkit's block size (cow filter), see nbdkit-plugin/nbdkit.ts. */
  blocksize: string;
  readOnly: boolean;
  /** nbdkit -v, and keep its log. */
  verbose: boolean;
  /** Append a hexdump of every read the helper serves to the nbdkit log. */
  hexdump: boolean;
  nbdkitBinary?: string;
  /** Parent of the temp directory (default: the OS temp dir). */
  tmpRoot?: string;
  /** Decoded lz4 frames kept in memory (default: ChainBackend's). */
  cacheBytes?: number;
  /** Disk space for decoded lz4 frames of compressed files (DecodedCache); 0 or unset: none. */
  decodedCacheBytes?: number;
  /** Where the decoded-frame cache's scratch file is made (default: cacheDirectory()). */
  decodedCacheDir?: string;
  /** Diagnostics of the helper NBD server (connection and protocol errors). */
  log?: (message: string) => void;
}

export class MapSession {
  private helper: NbdServer | null = null;
  private nbdkit: NbdkitProcess | null = null;
  private dump: WriteStream | null = null;
  private decodedCache: DecodedCache | null = null;
  private stopped = false;

  private constructor(
    readonly chain: MappedChain,
    readonly opts: SessionOptions,
    readonly tmpDir: string,
    readonly nbdkitLog: string,
  ) {}

  /** Creates the temp directory; nothing runs yet. */
  static async create(chain: MappedChain, opts: SessionOptions): Promise<MapSession> {
    const root = opts.tmpRoot ?? tmpdir();
    const dir = await mkdtemp(join(root, "virtnbdmap."));
    const log = opts.verbose ? join(root, `virtnbdmap.nbdkit.${randomBytes(4).toString("hex")}.log`) : join(dir, "nbdkit.log");
    return new MapSession(chain, opts, dir, log);
  }

  /** NBD connections to the helper: nbdkit opens one for each client connection it serves. */
  get clientConnections(): number {
    return this.helper?.connectionCount ?? 0;
  }

  /** Resolves when at most `n` client connections are left (at once when that is so). */
  clientsAtMost(n: number): Promise<void> {
    return this.helper?.whenConnectionsAtMost(n) ?? Promise.resolve();
  }

  /** The decoded-frame cache of a compressed chain (null: plain chain, or switched off). */
  get decodedFrames(): DecodedCache | null {
    return this.decodedCache;
  }

  get nbdkitPid(): number | null {
    return this.nbdkit?.pid ?? null;
  }

  /** Settles when nbdkit exits (null before start). */
  get nbdkitExited(): Promise<unknown> | null {
    return this.nbdkit?.exited ?? null;
  }

  /** Starts the helper, then nbdkit; resolves once nbdkit listens. */
  async start(): Promise<void> {
    const o = this.opts;
    if (o.hexdump) this.dump = createWriteStream(this.nbdkitLog, { flags: "a" });
    const dump = this.dump;
    if (o.decodedCacheBytes && this.chain.members.some((m) => m.compressed)) {
      this.decodedCache = await DecodedCache.create({
        maxBytes: o.decodedCacheBytes,
        ...(o.decodedCacheDir !== undefined ? { dir: o.decodedCacheDir } : {}),
      });
    }
    const backend = new ChainBackend(this.chain.index, this.chain.sources, {
      ...(o.cacheBytes !== undefined ? { cacheBytes: o.cacheBytes } : {}),
      ...(this.decodedCache ? { decodedCache: this.decodedCache } : {}),
      ...(dump ? { onRead: (off: number, data: Buffer) => void dump.write(hexdump(off, data)) } : {}),
      description: this.chain.members.map((m) => m.given).join(","),
    });
    const socket = join(this.tmpDir, "chain.sock");
    this.helper = new NbdServer({ exports: { chain: backend }, defaultExport: "chain", ...(o.log ? { log: o.log } : {}) });
    await this.helper.listen({ path: socket });
    const config: NbdkitConfig = {
      helperSocket: socket,
      exportName: o.exportName,
      listenAddress: o.listenAddress,
      port: o.port,
      threads: o.threads,
      cowBlockSize: cowBlockSize(o.blocksize, this.chain.index.size),
      readOnly: o.readOnly,
      verbose: o.verbose,
      logFile: this.nbdkitLog,
      pidFile: join(this.tmpDir, "nbdkit.pid"),
      overlayDir: this.tmpDir,
      ...(o.nbdkitBinary !== undefined ? { binary: o.nbdkitBinary } : {}),
    };
    this.nbdkit = await NbdkitProcess.start(config);
  }

  /** Stops nbdkit and the helper, closes the files, removes the temp directory. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.nbdkit?.stop();
    await this.helper?.close();
    await this.decodedCache?.close();
    await this.chain.close();
    if (this.dump) await new Promise<void>((r) => this.dump!.end(() => r()));
    await rm(this.tmpDir, { recursive: true, force: true });
  }
}
