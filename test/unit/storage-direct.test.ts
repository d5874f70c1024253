import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, open, readFile, rm, stat, type FileHandle } from "node:fs/promises";
import { tmpdir } from "node:os";
import { constants } from "node:fs";
import { join } from "node:path";
import { alignedBuffer, DirectFileWriter, DIRECT_ALIGNMENT } from "../../src/storage/direct-file.js";
import { DirectoryTarget } from "../../src/storage/directory-target.js";
import { native } from "../../src/native/index.js";
import { tempDir } from "../helpers/tmp.js";

const KiB = 1024;

/**
 * Whether the temp directory's filesystem takes O_DIRECT (ext4, xfs, btrfs, tmpfs since Linux
 * 6.6). Where it does not, the tests that need it are skipped: the page-cache body serves such
 * filesystems, and the refusal itself is tested with /dev/full.
 */
async function directIoWorksHere(): Promise<boolean> {
  const dir = await mkdtemp(join(process.env["VNBT_TMPDIR"] ?? tmpdir(), "vnbt-probe-"));
  try {
    const f = await DirectFileWriter.create(join(dir, "probe"), 0o600, { bufferSize: 4096, buffers: 1 });
    await f?.close();
    return f !== null;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
const needsDirectIo = { skip: (await directIoWorksHere()) ? false : "the temp directory's filesystem refuses O_DIRECT" };

/** Writes `chunks` with up to `inFlight` calls outstanding; returns the sums `writeSummed` gave. */
async function writeAll(f: DirectFileWriter, chunks: Buffer[], inFlight = 6): Promise<number[]> {
  const sums: Promise<number>[] = [];
  const pending: Promise<number>[] = [];
  for (const c of chunks) {
    const p = f.writeSummed(c);
    sums.push(p);
    pending.push(p);
    if (pending.length >= inFlight) await pending.shift();
  }
  return Promise.all(sums);
}

/** A handle that behaves like `real` but whose writes fail as `fail` says. */
function failingWrites(real: FileHandle, fail: (position: number, length: number) => string | null): FileHandle {
  return new Proxy(real, {
    get(target, prop, receiver) {
      if (prop === "write") {
        return async (buf: Buffer, offset: number, length: number, position: number) => {
          const code = fail(position, length);
          if (code) throw Object.assign(new Error(`${code}: simulated`), { code });
          return target.write(buf, offset, length, position);
        };
      }
      const v = Reflect.get(target, prop, receiver);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

test("direct file: chunks of every size land in order across the ring; the tail is cut; each sum is the chunk's Adler-32", needsDirectIo, async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, "f.data");
  const f = await DirectFileWriter.create(path, 0o600, { bufferSize: 64 * KiB, buffers: 3 });
  assert.ok(f);
  const sizes = [1, 100, 4095, 4096, 4097, 65535, 65536, 65537, 200_000, 3, 131072, 70_001];
  const chunks = Array.from({ length: 60 }, (_, i) => randomBytes(sizes[i % sizes.length]!));
  const sums = await writeAll(f, chunks);
  const length = await f.finish();
  await f.sync();
  await f.close();
  assert.ok(f.usesDirectIo, "every write went past the page cache (aligned buffers and offsets)");
  const want = Buffer.concat(chunks);
  assert.equal(length, want.length);
  assert.notEqual(want.length % DIRECT_ALIGNMENT, 0, "the test covers a padded, cut tail");
  assert.ok((await readFile(path)).equals(want));
  assert.deepEqual(sums, chunks.map((c) => native.adler32(1, c)));
});

test("direct file: an aligned length is not cut, an empty file stays empty, plain write resolves after the copy", needsDirectIo, async (t) => {
  const dir = await tempDir(t);
  const aligned = join(dir, "aligned");
  const f = (await DirectFileWriter.create(aligned, 0o600, { bufferSize: 16 * KiB, buffers: 2 }))!;
  const buf = Buffer.alloc(48 * KiB, 7);
  await f.write(buf);
  buf.fill(9); // the caller reuses its buffer once write resolved
  await f.write(buf.subarray(0, 16 * KiB));
  assert.equal(await f.finish(), 64 * KiB);
  await f.close();
  const got = await readFile(aligned);
  assert.ok(got.subarray(0, 48 * KiB).every((b) => b === 7) && got.subarray(48 * KiB).every((b) => b === 9));

  const empty = join(dir, "empty");
  const e = (await DirectFileWriter.create(empty, 0o600))!;
  assert.equal(await e.finish(), 0);
  await e.close();
  assert.equal((await stat(empty)).size, 0);
});

test("direct file: a filesystem refusing O_DIRECT at open gets null", async () => {
  // A character device that refuses O_DIRECT (EINVAL), as tmpfs did before Linux 6.6.
  assert.equal(await DirectFileWriter.create("/dev/full", 0o600), null);
});

test("direct file: a filesystem that takes O_DIRECT at open but refuses the writes gets them through the page cache", needsDirectIo, async (t) => {
  const dir = await tempDir(t);
  for (const refusal of ["EINVAL", "EOPNOTSUPP"]) {
    const path = join(dir, `f.${refusal}`);
    let directOpens = 0;
    const f = (await DirectFileWriter.create(path, 0o600, {
      bufferSize: 16 * KiB,
      buffers: 2,
      openFile: async (p, flags, mode) => {
        const fh = await open(p, flags, mode);
        if (!(flags & constants.O_DIRECT)) return fh;
        directOpens++;
        return failingWrites(fh, () => refusal);
      },
    }))!;
    const chunks = Array.from({ length: 9 }, (_, i) => randomBytes(5000 + i * 3000));
    const sums = await writeAll(f, chunks, 3);
    assert.equal(await f.finish(), Buffer.concat(chunks).length);
    await f.sync();
    await f.close();
    assert.equal(directOpens, 1);
    assert.equal(f.usesDirectIo, false, refusal);
    assert.ok((await readFile(path)).equals(Buffer.concat(chunks)));
    assert.deepEqual(sums, chunks.map((c) => native.adler32(1, c)));
  }
});

test("direct file: a failed disk write (ENOSPC) is reported by a later write or by finish, and close still closes", needsDirectIo, async (t) => {
  const dir = await tempDir(t);
  for (const failAt of [0, 32 * KiB, 80 * KiB]) {
    const path = join(dir, `f${failAt}`);
    let handle: FileHandle | null = null;
    const f = (await DirectFileWriter.create(path, 0o600, {
      bufferSize: 16 * KiB,
      buffers: 2,
      openFile: async (p, flags, mode) => (handle = failingWrites(await open(p, flags, mode), (pos, len) => (pos + len > failAt ? "ENOSPC" : null))),
    }))!;
    let failure: unknown = null;
    try {
      for (let i = 0; i < 12; i++) await f.write(Buffer.alloc(10 * KiB, i));
      await f.finish();
    } catch (e) {
      failure = e;
    }
    assert.equal((failure as NodeJS.ErrnoException | null)?.code, "ENOSPC", `failing at ${failAt}`);
    await f.close();
    await assert.rejects(handle!.stat(), /EBADF|closed/, "descriptor closed");
  }
});

test("directory target: direct and page-cache bodies write the same bytes, and the same Adler-32s", needsDirectIo, async (t) => {
  const dir = await tempDir(t);
  const chunks = Array.from({ length: 40 }, (_, i) => randomBytes(((i * 7919) % 300_000) + 1));
  const files: Buffer[] = [];
  for (const directIo of [true, false]) {
    const target = await DirectoryTarget.create(join(dir, String(directIo)), { directIo });
    const f = await target.createFile("sda.full.data");
    assert.equal(typeof f.writeSummed === "function", directIo, "only the direct body sums while copying");
    if (f.writeSummed) {
      const sums = await Promise.all(chunks.map((c) => f.writeSummed!(c)));
      assert.deepEqual(sums, chunks.map((c) => native.adler32(1, c)));
    } else {
      await Promise.all(chunks.map((c) => f.write(c)));
    }
    await f.commit();
    files.push(await readFile(join(dir, String(directIo), "sda.full.data")));
  }
  assert.ok(files[0]!.equals(Buffer.concat(chunks)));
  assert.ok(files[1]!.equals(files[0]!));
});

test("alignedBuffer: V8 memory starting at a multiple of the O_DIRECT alignment; addressModulo sees subarray offsets", () => {
  for (const size of [4096, 65536, 4 << 20]) {
    const buf = alignedBuffer(size);
    assert.equal(buf.length, size);
    assert.equal(native.addressModulo(buf, DIRECT_ALIGNMENT), 0);
    assert.equal(native.addressModulo(buf.subarray(5), DIRECT_ALIGNMENT), 5);
    if (size > 8192) assert.equal(native.addressModulo(buf.subarray(4096 + 3), 4096), 3);
  }
  assert.throws(() => native.addressModulo(Buffer.alloc(1), 3000), /power of two/);
});
