/**
 * The backup chains of a live restore served to qemu (docs/behaviour.md, "Live restore"): one
 * read-only NBD export per disk on a unix socket whose path follows from the output directory
 * (so a rerun serves at the same place and qemu's reconnecting client finds it again), owned by
 * the user qemu runs as (libvirt's DAC label) with mode 0600: nobody else reads the backup
 * through it. lz4 chains keep their decoded frames in a bounded on-disk cache (chain/decoded-cache.ts),
 * so the guest's random reads of data not yet copied decode each frame once.
 */
import { createHash } from "node:crypto";
import { chmod, chown, mkdir, unlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ChainBackend } from "../chain/chain-backend.js";
import { DecodedCache } from "../chain/decoded-cache.js";
import type { MappedChain } from "../chain/chain-loader.js";
import { NbdServer } from "../nbd/server.js";

/** Where live-restore sockets live: `$VIRTNBDBACKUP_RUN_DIR`, `/run/virtnbdbackup` as root, else the user's runtime or temp dir. */
export function liveRunDirectory(env: NodeJS.ProcessEnv = process.env): string {
  if (env.VIRTNBDBACKUP_RUN_DIR) return env.VIRTNBDBACKUP_RUN_DIR;
  if (process.getuid?.() === 0) return "/run/virtnbdbackup";
  return join(env.XDG_RUNTIME_DIR || tmpdir(), `virtnbdbackup-${process.getuid?.() ?? "user"}`);
}

/** `<run dir>/live-<hash of the output directory>.sock`: short (unix socket paths end at 107 bytes) and stable. */
export function liveSocketPath(outputDir: string, runDir = liveRunDirectory()): string {
  const hash = createHash("sha256").update(resolve(outputDir)).digest("hex").slice(0, 16);
  return join(runDir, `live-${hash}.sock`);
}

export interface LiveServerOptions {
  socket: string;
  /** qemu's uid/gid (null: leave the socket this process's, for qemu running as this user) */
  owner: { uid: number; gid: number } | null;
  log: (message: string) => void;
}

/** Disk space per lz4 chain for decoded frames: the guest's random reads of not yet copied data come from there once decoded. */
const DECODED_CACHE_BYTES = 2 * 1024 ** 3;

export class LiveServer {
  private constructor(
    private readonly server: NbdServer,
    readonly socket: string,
    private readonly caches: DecodedCache[],
  ) {}

  /** Serves each disk's chain as the export named after the disk. A stale socket file (a killed run's) is replaced. */
  static async start(chains: ReadonlyMap<string, MappedChain>, o: LiveServerOptions): Promise<LiveServer> {
    const caches: DecodedCache[] = [];
    const exports = new Map<string, ChainBackend>();
    for (const [disk, chain] of chains) {
      const cache = chain.members.some((m) => m.compressed) ? await DecodedCache.create({ maxBytes: DECODED_CACHE_BYTES }) : null;
      if (cache) caches.push(cache);
      exports.set(disk, new ChainBackend(chain.index, chain.sources, { description: `${disk} of a live restore`, ...(cache ? { decodedCache: cache } : {}) }));
    }
    const server = new NbdServer({ exports, log: o.log });
    await mkdir(join(o.socket, ".."), { recursive: true, mode: 0o755 });
    await unlink(o.socket).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== "ENOENT") throw e;
    });
    await server.listen({ path: o.socket });
    try {
      await chmod(o.socket, 0o600);
      if (o.owner) await chown(o.socket, o.owner.uid, o.owner.gid);
    } catch (e) {
      await server.close();
      for (const c of caches) await c.close();
      throw e;
    }
    return new LiveServer(server, o.socket, caches);
  }

  /** Stops serving and drops the caches; the chains stay open (their owner, the restore, closes them). */
  async close(): Promise<void> {
    await this.server.close();
    await unlink(this.socket).catch(() => undefined);
    for (const c of this.caches) await c.close();
  }
}
