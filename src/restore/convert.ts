/**
 * Local restore through qemu's own copy engine: the chain is merged into one index and served
 * by our NBD server (the same backend virtnbdmap uses); `qemu-img convert -n --target-is-zero`
 * reads it and writes the new image, skipping holes, each block once. Measured ~2× faster
 * than writing through qemu-nbd, which ingests writes slower than qemu-img converts
 * (bench/backup-restore.ts). Every file is checked at the same time: `.chksum`, the
 * `.integrity` CRCs, frame structure and lz4 checksums. Any failure stops qemu-img and the
 * partial image is removed by the caller.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import type { ChainFile } from "../backupset/chain.js";
import { checkStream } from "../backupset/verify.js";
import { Adler32 } from "../format/checksum.js";
import { StreamReader } from "../format/reader.js";
import { readExactly, type RandomAccessSource } from "../format/source.js";
import { ChainBackend } from "../map/chain-backend.js";
import { indexReaders } from "../map/chain.js";
import { NbdServer } from "../nbd/index.js";
import type { BackupSetSource } from "../storage/set-source.js";
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

async function checkFile(set: BackupSetSource, name: string): Promise<void> {
  const listed = new Set((await set.list()).map((f) => f.name));
  const pool = new BufferPool(4 << 20, 2);
  const hasChksum = listed.has(`${name}.chksum`);
  // With a .chksum every byte is read for it below: the stream check walks the headers only.
  const structure = checkStream(set, name, pool, { payloads: !hasChksum }).catch((e: Error) => {
    throw new ConvertError(`Stream check of [${name}] failed: ${e.message}`);
  });
  // Awaited below, unless the checksum fails first: it must not become an unhandled rejection.
  structure.catch(() => undefined);
  if (!hasChksum) return void (await structure);
  const stored = (await set.readFile(`${name}.chksum`)).toString("latin1").trim();
  const source = await set.open(name);
  try {
    const buf = Buffer.allocUnsafeSlow(4 << 20);
    const sum = new Adler32();
    for (let pos = 0; pos < source.size; pos += buf.length) {
      const n = Math.min(buf.length, source.size - pos);
      await readExactly(source, buf, 0, n, pos);
      await sum.updateAsync(buf.subarray(0, n));
    }
    if (stored !== String(sum.value)) throw new ConvertError(`Checksum mismatch for [${name}]: stored [${stored}], computed [${sum.value}]: the file is damaged.`);
  } finally {
    await source.close();
  }
  await structure;
}

export async function convertChain(job: ConvertJob): Promise<void> {
  const sources: RandomAccessSource[] = [];
  let server: NbdServer | null = null;
  const dir = await mkdtemp(join(tmpdir(), "virtnbdrestore-"));
  try {
    const readers: StreamReader[] = [];
    for (const f of job.chain) {
      const source = await job.set.open(f.name);
      sources.push(source);
      readers.push(await StreamReader.open(source));
    }
    const index = await indexReaders(readers);
    const backend = new ChainBackend(index, sources, {
      description: `restore of ${job.disk}`,
      onRead: job.onProgress ? (_offset, data) => job.onProgress!(data.length) : undefined,
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
    const [result] = await Promise.all([convert, checks]);
    if (result.exitCode !== 0) {
      // qemu-img may report one failure per worker: one line for the user.
      const lines = [...new Set(String(result.stderr).split(/\r?\n/).map((l) => l.trim()).filter(Boolean))];
      throw new ConvertError(`qemu-img convert into [${job.image}] failed: ${lines.join("; ") || `exit ${result.exitCode}`}`);
    }
  } finally {
    await server?.close();
    for (const s of sources) await s.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}
