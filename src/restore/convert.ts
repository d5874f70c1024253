/**
 * Local restore through qemu's own copy engine: the chain is merged into one index and
 * `qemu-img convert -n --target-is-zero` writes the new image from it, skipping holes, each
 * block once. Uncompressed chains in plain files are read by qemu-img itself, one `raw` view
 * per range (direct-sources.ts); otherwise (lz4, zip archives, very fragmented chains) our NBD
 * server serves the index (the same backend virtnbdmap uses). Both are ~2× faster than
 * writing through qemu-nbd, which ingests writes slower than qemu-img converts
 * (bench/backup-restore.ts). Every file is checked at the same time (frame structure, the
 * `.integrity` CRCs, lz4 checksums, `.chksum`: a failure stops qemu-img at once); over NBD
 * the `.chksum` is computed from the bytes served (AdlerTap: no second full read) and compared
 * after the copy. Any failure leaves a partial image that the caller removes.
 */
import { mkdtemp, open, rm, type FileHandle } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import type { ChainFile } from "../backupset/chain-order.js";
import { storedChecksum } from "../backupset/stored-checksum.js";
import { checkStream } from "../backupset/verify.js";
import { AdlerTap } from "../format/adler-tap.js";
import { StreamReader } from "../format/reader.js";
import { ChainBackend } from "../chain/chain-backend.js";
import { directCommand, directPasses } from "./direct-sources.js";
import { indexReaders } from "../chain/chain-loader.js";
import { NbdServer } from "../nbd/index.js";
import type { BackupSetSource } from "../storage/set-source.js";
import { FollowingWriteback } from "../storage/writeback.js";
import { BufferPool } from "../util/buffer-pool.js";

export class ConvertError extends Error {}

/**
 * Decoded lz4 frames while qemu-img reads front to back (ChainBackend `boundedDecode`): the
 * frame being read and 4 MiB for an incremental's piece inside it, so a restore holds one
 * decoded 32 MiB frame, one compressed and the spare, 68 MiB in all (an 80 MiB cache and
 * buffers by size class held up to 200 MiB). Room for the next frame decoded ahead made the
 * copy ~10 % faster for 32 MiB more peak RSS (2026-12-05, 2 GiB lz4 full: 156 → 189 MiB).
 */
const RESTORE_DECODE_SPARE = 4 << 20;

/**
 * qemu-img convert from our NBD server: two requests at a time (`-m 2`, of 2 MiB as qemu-img
 * reads). Reads across lz4 pieces and of raw pieces need a reply buffer here; with qemu-img's
 * default eight a chain of a full and 30 incs peaked 14 MiB higher (lz4: 174 → 160 MiB) and
 * copied no faster: this server is the bottleneck, not the requests in flight. One request
 * at a time, or 1 MiB ones, saved 1-2 MiB more and copied 10-25 % slower (2026-12-05).
 */
const NBD_COROUTINES = 2;

/**
 * Read buffer of the files' checks (while qemu-img copies), and of the `.chksum` sums of files
 * that cannot be summed where they lie (objects; plain files are summed in the page cache,
 * FileRangeSource.adler32).
 */
const CHECK_BUFFER = 256 << 10;

export interface ConvertJob {
  disk: string;
  chain: ChainFile[];
  set: BackupSetSource;
  /** Image created beforehand with the original's settings (qemu-img create). */
  image: string;
  /** Write compressed clusters (`--compress`). */
  compress: boolean;
  /** Serve the chain over NBD even when qemu-img could read the files itself (tests, benchmarks, devices). */
  viaNbd?: boolean;
  /** The target's format (default qcow2), and whether it reads as zeros already (a new image; not a used device). */
  output?: { format: "qcow2" | "raw"; targetIsZero: boolean };
  onProgress?: (bytes: number) => void;
  /** Debug messages (timings). */
  log?: (message: string) => void;
}

/**
 * Checks one file while qemu-img reads it: the frame structure (headers only when a `.chksum`
 * covers the bytes), the `.integrity` CRCs and lz4 checksums. Resolves with the stored
 * checksum to compare after the copy, or null. `pool`: the buffers of the check, shared by
 * the files of a chain (checked one after another).
 */
async function checkFile(set: BackupSetSource, name: string, pool: BufferPool): Promise<number | null> {
  const stored = await storedChecksum(set, name);
  await checkStream(set, name, pool, { payloads: stored === null }).catch((e: Error) => {
    throw new ConvertError(`Stream check of [${name}] failed: ${e.message}`);
  });
  return stored;
}

export async function convertChain(job: ConvertJob): Promise<void> {
  const sources: AdlerTap[] = [];
  let server: NbdServer | null = null;
  let image: FileHandle | null = null;
  let stopPolling = () => {};
  const dir = await mkdtemp(join(tmpdir(), "virtnbdrestore-"));
  try {
    // Each file's Adler-32 is taken from the reads that serve qemu-img (plus what it skips).
    const readers: StreamReader[] = [];
    for (const f of job.chain) {
      const source = new AdlerTap(await job.set.open(f.name));
      sources.push(source);
      readers.push(await StreamReader.open(source));
    }
    const index = await indexReaders(readers);
    // qemu-img does not flush its target (cache=unsafe); the image is made durable here, its
    // writeback started while qemu-img still writes.
    image = await open(job.image, "r");
    const writeback = new FollowingWriteback(image.fd);
    const written = (n: number) => {
      writeback.progress(n);
      job.onProgress?.(n);
    };
    // In-order writes (no -W): qcow2 clusters are allocated in offset order, so the same set
    // restores to a byte-identical file (docs/behaviour.md, "Image creation"); -W measured no faster here.
    const output = job.output ?? { format: "qcow2", targetIsZero: true };
    const base = ["convert", "-n", ...(output.targetIsZero ? ["--target-is-zero"] : [])];
    if (job.compress) base.push("-c");
    const paths = job.chain.map((f) => job.set.pathOf(f.name));
    const passes = job.viaNbd ? null : directPasses(index, paths, job.compress ? 1 : Infinity);
    let commands: string[][];
    if (passes) {
      // qemu-img reads the files itself; progress is what the image grows by.
      commands = passes.map((p) => directCommand(base, p, passes.length === 1, output.format, job.image));
      stopPolling = await followGrowth(image, written);
    } else {
      const backend = new ChainBackend(index, sources, { description: `restore of ${job.disk}`, boundedDecode: { spare: RESTORE_DECODE_SPARE }, onRead: (_offset, data) => written(data.length) });
      server = new NbdServer({ exports: { [job.disk]: backend } });
      const socket = join(dir, "nbd.sock");
      await server.listen({ path: socket });
      commands = [[...base, "-m", String(NBD_COROUTINES), "-f", "raw", "-O", output.format, `nbd+unix:///${job.disk}?socket=${socket}`, job.image]];
    }
    const ranges = passes?.reduce((a, p) => a + p.sources.length, 0);
    job.log?.(`qemu-img convert reads ${passes ? `the backup files directly (${ranges} source ranges, ${passes.length} pass(es))` : "our NBD server"}`);
    const started = performance.now();
    await convertChecked(job, commands, sources, passes !== null, started);
    stopPolling();
    const durable = image;
    await writeback.finish(() => durable.datasync());
    job.log?.(`image synced after ${((performance.now() - started) / 1000).toFixed(2)} s`);
  } finally {
    stopPolling();
    await server?.close();
    await image?.close();
    for (const s of sources) await s.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

/** Reports what the image grows by (qemu-img reading the files itself); returns the stop. */
async function followGrowth(image: FileHandle, written: (n: number) => void): Promise<() => void> {
  let allocated = (await image.stat()).blocks * 512;
  const poll = setInterval(() => {
    void image.stat().then((st) => {
      const now = st.blocks * 512;
      if (now > allocated) written(now - allocated);
      allocated = Math.max(allocated, now);
    }, () => undefined);
  }, 100);
  return () => clearInterval(poll);
}

/**
 * Runs qemu-img convert while the files' stored checksums are checked: read directly by
 * qemu-img, this process reads each file once for it at the same time; served over NBD, the
 * checksum is taken from the served bytes once the copy ends. A failed check stops the copy.
 */
async function convertChecked(job: ConvertJob, commands: string[][], taps: AdlerTap[], direct: boolean, started: number): Promise<void> {
  const seconds = () => ((performance.now() - started) / 1000).toFixed(2);
  let current: ReturnType<typeof runQemuImg> | null = null;
  let stopped = false;
  // The passes one after another; the first failure ends them.
  const convert = (async () => {
    for (const args of commands) {
      if (stopped) return null;
      current = runQemuImg(args);
      const result = await current;
      if (result.exitCode !== 0) return result;
    }
    return null;
  })();
  void convert.then(() => job.log?.(`qemu-img convert done after ${seconds()} s`));
  // The files one after another, all through the same buffers: a chain of a full and 30 incs
  // checked at once held a read buffer per file (31 × 4 MiB).
  const pool = BufferPool.fixed(CHECK_BUFFER, 2);
  let gapBuffer: Buffer | undefined;
  const gap = () => (gapBuffer ??= Buffer.allocUnsafeSlow(CHECK_BUFFER));
  const checks = (async () => {
    const stored: (number | null)[] = [];
    for (const [i, f] of job.chain.entries()) {
      stored.push(await checkFile(job.set, f.name, pool));
      if (stored[i] !== null && direct) compareChecksum(f.name, stored[i]!, await taps[i]!.finish(gap()));
    }
    return stored;
  })();
  void checks.then(() => job.log?.(`backup file checks done after ${seconds()} s`), () => undefined);
  // A failed check stops the copy at once; the copy's own failure is reported after it ends.
  checks.catch(() => {
    stopped = true;
    current?.kill("SIGTERM");
  });
  const [result, stored] = await Promise.all([convert, checks]);
  if (result) {
    // qemu-img may report one failure per worker: one line for the user.
    const lines = [...new Set(String(result.stderr).split(/\r?\n/).map((l) => l.trim()).filter(Boolean))];
    throw new ConvertError(`qemu-img convert into [${job.image}] failed: ${lines.join("; ") || `exit ${result.exitCode}`}`);
  }
  if (direct) return;
  for (const [i, f] of job.chain.entries()) {
    const expected = stored[i];
    if (expected !== null && expected !== undefined) compareChecksum(f.name, expected, await taps[i]!.finish(gap()));
  }
  job.log?.(`checksums done after ${seconds()} s`);
}

const runQemuImg = (args: string[]) => execa("qemu-img", args, { reject: false, stdin: "ignore" });

function compareChecksum(name: string, stored: number, computed: number): void {
  if (computed !== stored) throw new ConvertError(`Checksum mismatch for [${name}]: stored [${stored}], computed [${computed}]: the file is damaged.`);
}
