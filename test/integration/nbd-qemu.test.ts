/** Our NBD client against qemu-nbd: qcow2 with a persistent dirty bitmap, reads, writes, TLS. */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import {
  ALLOCATION_DEPTH,
  backupExtents,
  BASE_ALLOCATION,
  collectBackupExtents,
  connect,
  contextExtents,
  dirtyBitmapContext,
  NbdClient,
  NbdHandshakeError,
  queryExportInfo,
  type BackupExtent,
  type ConnectOptions,
  type RawExtent,
} from "../../src/nbd/index.js";
import { KiB, MiB, makeImage, makeTlsCerts, nbdinfoMap, qemuIo, run, startQemuNbd, type ImageWrite } from "../helpers/nbd-servers.js";
import { tempDir } from "../helpers/tmp.js";

const SIZE = 64 * MiB;
const BITMAP = "b0";
const DIRTY = dirtyBitmapContext(BITMAP);
const BEFORE: ImageWrite[] = [
  { pattern: 0x11, offset: 0, length: MiB },
  { pattern: 0x22, offset: 8 * MiB, length: 128 * KiB },
  { zero: true, offset: 12 * MiB, length: 256 * KiB },
  { pattern: 0x23, offset: 20 * MiB, length: 192 * KiB },
];
// After the bitmap was added: these make it dirty.
const AFTER = [
  "write -P 0x33 4198400 8192", // 4 MiB + 4 KiB, partial cluster
  "write -P 0x44 16777216 1048576",
  "discard 8388608 65536", // dirty, and a hole now
  "write -P 0x55 20971520 65536", // dirty inside an older data extent
  `write -P 0x66 ${SIZE - 64 * KiB} ${64 * KiB}`,
];

async function open(t: TestContext, opts: ConnectOptions): Promise<NbdClient> {
  const c = await connect({ intervalMs: 1, attempts: 50, ...opts });
  t.after(() => c.close());
  return c;
}

async function all<T>(g: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of g) out.push(x);
  return out;
}

function mergeNbdinfo(m: { offset: number; length: number; type: number }[]): RawExtent[] {
  const out: RawExtent[] = [];
  for (const e of m) {
    const last = out.at(-1);
    if (last && last.flags === e.type && last.offset + last.length === e.offset) last.length += e.length;
    else out.push({ offset: e.offset, length: e.length, flags: e.type });
  }
  return out;
}

/** The extent query (docs/behaviour.md, "Extent query") computed from nbdinfo's maps, the way upstream's `-q` does it. */
function expectedFromMaps(base: RawExtent[], dirty: RawExtent[] | null, sparse: boolean): BackupExtent[] {
  if (!dirty) return base.map((e) => ({ offset: e.offset, length: e.length, data: (e.flags & 1) === 0, dirty: null }));
  if (!sparse) return dirty.map((e) => ({ offset: e.offset, length: e.length, data: e.flags === 1, dirty: e.flags === 1 }));
  const b = base.filter((e) => (e.flags & 1) === 0);
  const d = dirty.filter((e) => e.flags === 1);
  const out: BackupExtent[] = [];
  for (let i = 0, j = 0; i < d.length && j < b.length; ) {
    const s = Math.max(d[i]!.offset, b[j]!.offset);
    const e = Math.min(d[i]!.offset + d[i]!.length, b[j]!.offset + b[j]!.length);
    if (s < e) out.push({ offset: s, length: e - s, data: true, dirty: true });
    if (d[i]!.offset + d[i]!.length < b[j]!.offset + b[j]!.length) i++;
    else j++;
  }
  return out;
}

describe("nbd client vs qemu-nbd", () => {
  let image = "";
  let raw: Buffer;
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const f of cleanups) await f();
  });

  before(async () => {
    // One image for the read-only tests; it outlives the individual tests.
    const holder = { after: (fn: () => Promise<void>) => cleanups.push(fn) } as unknown as TestContext;
    const dir = await tempDir(holder, "vnbt-nbd-qemu-");
    image = await makeImage(holder, { size: SIZE, dir, writes: BEFORE, bitmaps: [BITMAP] });
    await qemuIo(image, "qcow2", AFTER);
    const rawPath = join(dir, "disk.raw");
    await run("qemu-img", ["convert", "-f", "qcow2", "-O", "raw", image, rawPath]);
    raw = await readFile(rawPath);
  });

  it("negotiates export info and meta contexts", async (t) => {
    const q = await startQemuNbd(t, { image, exportName: "sda", bitmap: BITMAP, allocationDepth: true });
    // NBD_OPT_INFO first: qemu-nbd -e 4 takes no fifth client while our four are connected.
    const info = await queryExportInfo({ target: q.target, exportName: "sda" });
    assert.equal(info.size, SIZE);
    assert.equal(info.readOnly, true);
    assert.equal(info.maxBlockSize, 32 * MiB);
    const c = await open(t, { uri: q.uri, metaContexts: [BASE_ALLOCATION, DIRTY, ALLOCATION_DEPTH], connections: 4 });
    assert.equal(c.size, SIZE);
    assert.equal(c.exportName, "sda");
    assert.equal(c.info.readOnly, true);
    assert.equal(c.info.structuredReplies, true);
    assert.equal(c.info.canMultiConn, true);
    assert.equal(c.connections.length, 4);
    assert.equal(c.info.maxBlockSize, 32 * MiB);
    assert.equal(c.info.maxRequestSize, 32 * MiB);
    assert.equal(c.maxIo, 32 * MiB);
    assert.deepEqual([...c.info.metaContexts.keys()].sort(), [BASE_ALLOCATION, ALLOCATION_DEPTH, DIRTY].sort());
    await assert.rejects(c.write(0, Buffer.alloc(512)), /read-only/);
    await assert.rejects(queryExportInfo({ target: q.target, exportName: "sda", handshakeTimeoutMs: 200 }), /did not answer within 200 ms/);
    // REQ_ONE: one descriptor per context.
    const one = await c.blockStatus(0, SIZE, { reqOne: true });
    for (const flat of one.contexts.values()) assert.equal(flat.length, 2);
  });

  it("reports the same per-context extents as nbdinfo --map", async (t) => {
    const q = await startQemuNbd(t, { image, exportName: "sda", bitmap: BITMAP, allocationDepth: true });
    const c = await open(t, { uri: q.uri, metaContexts: [BASE_ALLOCATION, DIRTY, ALLOCATION_DEPTH] });
    for (const ctx of [BASE_ALLOCATION, DIRTY, ALLOCATION_DEPTH]) {
      assert.deepEqual(await all(contextExtents(c, ctx)), mergeNbdinfo(await nbdinfoMap(q.uri, ctx)), ctx);
    }
    const base = await all(contextExtents(c, BASE_ALLOCATION));
    // Allocated data, allocated zeroes (qcow2 zero clusters) and holes are all there.
    assert.ok(base.some((e) => e.flags === 0));
    assert.ok(base.some((e) => e.flags === 3));
  });

  it("computes backup extents for full, inc and inc without sparse detection", async (t) => {
    const q = await startQemuNbd(t, { image, exportName: "sda", bitmap: BITMAP });
    const c = await open(t, { uri: q.uri, metaContexts: [BASE_ALLOCATION, DIRTY] });
    const base = mergeNbdinfo(await nbdinfoMap(q.uri, BASE_ALLOCATION));
    const dirty = mergeNbdinfo(await nbdinfoMap(q.uri, DIRTY));
    const full = await all(backupExtents(c));
    assert.deepEqual(full, expectedFromMaps(base, null, true));
    assert.equal(full.reduce((s, e) => s + e.length, 0), SIZE);
    const inc = await all(backupExtents(c, { dirtyContext: DIRTY }));
    assert.deepEqual(inc, expectedFromMaps(base, dirty, true));
    const incList = await collectBackupExtents(c, { dirtyContext: DIRTY });
    // Dirty: 4 MiB (one 64 KiB granule), 16 MiB (1 MiB), 20 MiB (64 KiB), the last 64 KiB;
    // the discarded range at 8 MiB is dirty but a hole now, so it is left out.
    assert.equal(incList.dataBytes, 64 * KiB + MiB + 64 * KiB + 64 * KiB);
    assert.ok(!inc.some((e) => e.offset < 8 * MiB + 64 * KiB && e.offset + e.length > 8 * MiB));
    const noSparse = await all(backupExtents(c, { dirtyContext: DIRTY, sparseDetection: false }));
    assert.deepEqual(noSparse, expectedFromMaps(base, dirty, false));
    assert.ok(noSparse.some((e) => e.offset === 8 * MiB && e.data));
  });

  it("reads bit-exact: whole disk over several connections, unaligned pieces, beyond the block size", async (t) => {
    const q = await startQemuNbd(t, { image, exportName: "sda" });
    const c = await open(t, { uri: q.uri, connections: 4, maxBytesInFlight: 16 * MiB });
    const whole = await c.read(0, SIZE);
    assert.ok(whole.equals(raw));
    const big = await c.read(MiB - 3, 40 * MiB + 7); // > 32 MiB: split
    assert.ok(big.equals(raw.subarray(MiB - 3, 41 * MiB + 4)));
    let seed = 1;
    const rnd = (n: number): number => {
      seed = (seed * 48271) % 0x7fffffff;
      return seed % n;
    };
    const pool = Buffer.alloc(300 * KiB);
    const reads = Array.from({ length: 64 }, () => {
      const off = rnd(SIZE - 300 * KiB);
      const len = 1 + rnd(300 * KiB);
      return c.read(off, len).then((b) => assert.ok(b.equals(raw.subarray(off, off + len)), `read ${off}+${len}`));
    });
    await Promise.all(reads);
    const into = await c.read(20 * MiB, 100 * KiB, pool);
    assert.ok(into.equals(raw.subarray(20 * MiB, 20 * MiB + 100 * KiB)));
    await c.disconnect();
  });

  it("writes, zeroes, trims and flushes on a writable export", async (t) => {
    const dir = await tempDir(t, "vnbt-nbd-rw-");
    const img = await makeImage(t, { size: 16 * MiB, dir, writes: [{ pattern: 0x77, offset: 0, length: 16 * MiB }] });
    const q = await startQemuNbd(t, { image: img, exportName: "vda", readOnly: false, extraArgs: ["--discard=unmap"] });
    const c = await open(t, { uri: q.uri, metaContexts: [BASE_ALLOCATION] });
    assert.equal(c.info.readOnly, false);
    assert.ok(c.info.canFlush && c.info.canTrim && c.info.canWriteZeroes && c.info.canFua);
    const expect = Buffer.alloc(16 * MiB, 0x77);
    const data = Buffer.alloc(3 * MiB + 5);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    await c.write(MiB + 1, data);
    data.copy(expect, MiB + 1);
    await c.write(10 * MiB, Buffer.alloc(4096, 0xab), { fua: true });
    expect.fill(0xab, 10 * MiB, 10 * MiB + 4096);
    await c.writeZeroes(6 * MiB, 2 * MiB);
    expect.fill(0, 6 * MiB, 8 * MiB);
    await c.writeZeroes(8 * MiB, 64 * KiB, { noHole: true });
    if (c.info.canFastZero) await c.writeZeroes(8 * MiB + 64 * KiB, 64 * KiB, { fastZero: true });
    expect.fill(0, 8 * MiB + 64 * KiB, 8 * MiB + 128 * KiB);
    expect.fill(0, 8 * MiB, 8 * MiB + 64 * KiB);
    await c.trim(12 * MiB, 2 * MiB);
    expect.fill(0, 12 * MiB, 14 * MiB); // qcow2 discard reads back as zeroes
    await c.flush();
    assert.ok((await c.read(0, 16 * MiB)).equals(expect));
    const base = await all(contextExtents(c, BASE_ALLOCATION));
    assert.ok(base.some((e) => e.offset <= 12 * MiB && e.offset + e.length >= 14 * MiB && (e.flags & 2) !== 0));
    await c.disconnect();
    await q.stop();
    const out = join(dir, "out.raw");
    await run("qemu-img", ["convert", "-f", "qcow2", "-O", "raw", img, out]);
    assert.ok((await readFile(out)).equals(expect));
  });

  it("connects over TCP", async (t) => {
    const q = await startQemuNbd(t, { image, exportName: "sda", tcp: true });
    const c = await open(t, { uri: `nbd://127.0.0.1:${q.port}/sda` });
    assert.ok((await c.read(0, MiB)).equals(raw.subarray(0, MiB)));
    await c.disconnect();
  });

  it("uses TLS (STARTTLS, x509 in qemu's layout) and refuses plain text where TLS is required", async (t) => {
    const pki = await makeTlsCerts(t);
    const q = await startQemuNbd(t, { image, exportName: "sda", tlsDir: pki, tlsVerifyPeer: true, bitmap: BITMAP });
    const c = await open(t, { uri: q.uri, tls: { certDir: pki }, metaContexts: [BASE_ALLOCATION, DIRTY] });
    assert.equal(c.info.tls, true);
    assert.ok((await c.read(0, 2 * MiB)).equals(raw.subarray(0, 2 * MiB)));
    assert.ok((await all(backupExtents(c, { dirtyContext: DIRTY }))).length > 0);
    await c.disconnect();
    await assert.rejects(connect({ uri: q.uri, intervalMs: 1 }), (e: unknown) => e instanceof NbdHandshakeError && /requires TLS/.test(e.message));
    // A CA that did not sign the server certificate.
    const other = await makeTlsCerts(t);
    await assert.rejects(connect({ uri: q.uri, tls: { certDir: other }, intervalMs: 1 }), /certificate/i);
    // Over TCP with host name verification (the certificate names localhost / 127.0.0.1).
    const qt = await startQemuNbd(t, { image, exportName: "sda", tlsDir: pki, tcp: true });
    const ct = await open(t, { uri: `nbds://127.0.0.1:${qt.port}/sda?tls-certificates=${pki}` });
    assert.ok((await ct.read(0, 4096)).equals(raw.subarray(0, 4096)));
    await ct.disconnect();
  });
});
