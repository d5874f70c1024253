/**
 * Local restore through qemu's own copy engine: the chain is merged into one index and served
 * by our NBD server (the same backend virtnbdmap uses); `qemu-img convert -n --target-is-zero`
 * reads it and writes the new image, skipping holes, each block once. Measured ~2× faster
 * than writing through qemu-nbd, which ingests writes slower than qemu-img converts
 * (bench/backup-restore.ts). Every file is checked at the same time (frame structure, the
 * `.integrity` CRCs, lz4 checksums: a failure stops qemu-img at once) and its `.chksum` after
 * the copy, from the bytes served (AdlerTap: no second full read). Any failure leaves a
 * partial image that the caller removes.
 */
import { mkdtemp, open, rm, type FileHandle } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import type { ChainFile } from "../backupset/chain.js";
import { checkStream } from "../backupset/verify.js";
import { AdlerTap } from "../format/adler-tap.js";
import { StreamReader } from "../format/reader.js";
import type { RandomAccessSource } from "../format/source.js";
import { ChainBackend } from "../map/chain-backend.js";
import { indexReaders } from "../map/chain.js";
import { NbdServer } from "../nbd/index.js";
import type { BackupSetSource } from "../storage/set-source.js";
import { FollowingWriteback } from "../storage/writeback.js";
import { BufferPool } from "../util/buffer-pool.js";

export class ConvertError extends Error {}

export interface ConvertJob {
  disk: string;
  chain: ChainFile[];
  set: BackupSetSource;
  /** Image created beforehand with the original's settings (qemu-img create). */
  image: string;
  /** Write compressed clusters (`--compress`). */
  compress: boolean;
  onProgress?: (bytes: number) => void;
  /** Debug messages (timings). */
  log?: (message: string) => void;
}

/**
 * Checks one file while qemu-img reads it: the frame structure (headers only when a `.chksum`
 * covers the bytes), the `.integrity` CRCs and lz4 checksums. Resolves with the stored
 * checksum to compare after the copy, or null.
 */
async function checkFile(set: BackupSetSource, name: string): Promise<number | null> {
  const listed = new Set((await set.list()).map((f) => f.name));
  const pool = new BufferPool(4 << 20, 2);
  const hasChksum = listed.has(`${name}.chksum`);
  await checkStream(set, name, pool, { payloads: !hasChksum }).catch((e: Error) => {
    throw new ConvertError(`Stream check of [${name}] failed: ${e.message}`);
  });
  if (!hasChksum) return null;
  const text = (await set.readFile(`${name}.chksum`)).toString("latin1").trim();
  if (!/^\d{1,10}$/.test(text)) throw new ConvertError(`Checksum file [${name}.chksum] does not hold a checksum: [${text.slice(0, 40)}]`);
  return Number(text);
}

export async function convertChain(job: ConvertJob): Promise<void> {
  const sources: RandomAccessSource[] = [];
  let server: NbdServer | null = null;
  let image: FileHandle | null = null;
  const dir = await mkdtemp(join(tmpdir(), "virtnbdrestore-"));
  try {
    const readers: StreamReader[] = [];
    // Every file's Adler-32 is taken from the reads that serve qemu-img (plus what it skips).
    const taps: AdlerTap[] = [];
    for (const f of job.chain) {
      const source = new AdlerTap(await job.set.open(f.name));
      sources.push(source);
      taps.push(source);
      readers.push(await StreamReader.open(source));
    }
    const index = await indexReaders(readers);
    // qemu-img does not flush its target (cache=unsafe); the image is made durable here, its
    // writeback started while qemu-img still writes.
    image = await open(job.image, "r");
    const writeback = new FollowingWriteback(image.fd);
    const backend = new ChainBackend(index, sources, {
      description: `restore of ${job.disk}`,
      onRead: (_offset, data) => {
        writeback.progress(data.length);
        job.onProgress?.(data.length);
      },
    });
    server = new NbdServer({ exports: { [job.disk]: backend } });
    const socket = join(dir, "nbd.sock");
    await server.listen({ path: socket });

    const args = ["convert", "-n", "--target-is-zero", "-W", "-f", "raw", "-O", "qcow2"];
    if (job.compress) args.push("-c");
    args.push(`nbd+unix:///${job.disk}?socket=${socket}`, job.image);
    const started = performance.now();
    const convert = execa("qemu-img", args, { reject: false, stdin: "ignore" });
    void convert.then(() => job.log?.(`qemu-img convert done after ${((performance.now() - started) / 1000).toFixed(2)} s`));
    const checks = Promise.all(job.chain.map((f) => checkFile(job.set, f.name)));
    void checks.then(() => job.log?.(`backup file checks done after ${((performance.now() - started) / 1000).toFixed(2)} s`), () => undefined);
    // A failed check stops the copy at once; the copy's own failure is reported after it ends.
    checks.catch(() => convert.kill("SIGTERM"));
    const [result, stored] = await Promise.all([convert, checks]);
    if (result.exitCode !== 0) {
      // qemu-img may report one failure per worker: one line for the user.
      const lines = [...new Set(String(result.stderr).split(/\r?\n/).map((l) => l.trim()).filter(Boolean))];
      throw new ConvertError(`qemu-img convert into [${job.image}] failed: ${lines.join("; ") || `exit ${result.exitCode}`}`);
    }
    for (const [i, f] of job.chain.entries()) {
      const expected = stored[i];
      if (expected === null || expected === undefined) continue;
      const computed = await taps[i]!.finish();
      if (computed !== expected) throw new ConvertError(`Checksum mismatch for [${f.name}]: stored [${expected}], computed [${computed}]: the file is damaged.`);
    }
    job.log?.(`checksums done after ${((performance.now() - started) / 1000).toFixed(2)} s`);
    const durable = image;
    await writeback.finish(() => durable.datasync());
    job.log?.(`image synced after ${((performance.now() - started) / 1000).toFixed(2)} s`);
  } finally {
    await server?.close();
    await image?.close();
    for (const s of sources) await s.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}
