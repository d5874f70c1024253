/** Our NBD client against nbdkit: plugins memory / sparse-random / data, error and delay filters. */
import assert from "node:assert/strict";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import {
  backupExtents,
  BASE_ALLOCATION,
  connect,
  contextExtents,
  NbdClient,
  NbdConnectionError,
  NbdRequestError,
  type ConnectOptions,
} from "../../src/nbd/index.js";
import { KiB, MiB, makeTlsCerts, nbdinfoMap, run, startNbdkit } from "../helpers/nbd-servers.js";
import { tempDir } from "../helpers/tmp.js";

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

describe("nbd client vs nbdkit", () => {
  it("memory: writes, zeroes, trims, FUA, flush, cache, extents, multi-conn", async (t) => {
    const k = await startNbdkit(t, { plugin: "memory", args: ["32M"] });
    const c = await open(t, { uri: k.uri, metaContexts: [BASE_ALLOCATION], connections: 2 });
    assert.equal(c.size, 32 * MiB);
    assert.ok(c.info.canMultiConn);
    assert.equal(c.connections.length, 2);
    assert.equal(c.info.maxBlockSize, 0, "nbdkit memory announces no block size");
    assert.equal(c.info.maxRequestSize, 32 * MiB);
    assert.equal(c.maxIo, 32 * MiB);
    const data = Buffer.alloc(5 * MiB);
    for (let i = 0; i < data.length; i++) data[i] = (i >> 9) & 0xff;
    await c.write(3 * MiB, data, { fua: true });
    await c.writeZeroes(4 * MiB, MiB);
    data.fill(0, MiB, 2 * MiB);
    await c.trim(20 * MiB, 4 * MiB);
    await c.cache(0, MiB);
    await c.flush();
    assert.ok((await c.read(3 * MiB, 5 * MiB)).equals(data));
    const ext = await all(backupExtents(c));
    const expected: [number, number, boolean][] = [];
    let lastType = -1;
    for (const e of await nbdinfoMap(k.uri)) {
      const last = expected.at(-1);
      if (last && e.type === lastType) last[1] += e.length;
      else expected.push([e.offset, e.length, (e.type & 1) === 0]);
      lastType = e.type;
    }
    assert.deepEqual(ext.map((e) => [e.offset, e.length, e.data]), expected);
    assert.ok(ext.some((e) => e.data && e.offset <= 3 * MiB));
    await c.disconnect();
  });

  it("sparse-random: extents match nbdinfo, data matches nbdcopy", async (t) => {
    const dir = await tempDir(t, "vnbt-nbd-kit-");
    const k = await startNbdkit(t, { plugin: "sparse-random", args: ["128M", "seed=4711"], readOnly: true });
    const c = await open(t, { uri: k.uri, metaContexts: [BASE_ALLOCATION], connections: 4 });
    const raw = await all(contextExtents(c, BASE_ALLOCATION));
    const info = await nbdinfoMap(k.uri);
    const merged: typeof raw = [];
    for (const e of info) {
      const last = merged.at(-1);
      if (last && last.flags === e.type) last.length += e.length;
      else merged.push({ offset: e.offset, length: e.length, flags: e.type });
    }
    assert.deepEqual(raw, merged);
    const out = join(dir, "copy.raw");
    await run("nbdcopy", [k.uri, out]);
    const expect = await readFile(out);
    let dataBytes = 0;
    const buf = Buffer.alloc(4 * MiB);
    for await (const e of backupExtents(c)) {
      if (!e.data) {
        assert.ok(expect.subarray(e.offset, e.offset + e.length).every((b) => b === 0));
        continue;
      }
      dataBytes += e.length;
      for (let pos = 0; pos < e.length; pos += buf.length) {
        const n = Math.min(buf.length, e.length - pos);
        const got = await c.read(e.offset + pos, n, buf);
        assert.ok(got.equals(expect.subarray(e.offset + pos, e.offset + pos + n)), `data at ${e.offset + pos}`);
      }
    }
    assert.ok(dataBytes > 0 && dataBytes < c.size);
    await c.disconnect();
  });

  it("data: exact content", async (t) => {
    const k = await startNbdkit(t, { plugin: "data", args: ["data=1 2 3 @4096 0x55*10 @65535 0xaa", "size=131072"] });
    const c = await open(t, { uri: k.uri });
    const b = await c.read(0, 131072);
    const expect = Buffer.alloc(131072);
    expect.set([1, 2, 3], 0);
    expect.fill(0x55, 4096, 4106);
    expect[65535] = 0xaa;
    assert.ok(b.equals(expect));
    assert.deepEqual(await c.read(65534, 3), Buffer.from([0, 0xaa, 0]));
    await c.disconnect();
  });

  it("error filter: errors name the errno, the request and the export; the connection survives", async (t) => {
    const dir = await tempDir(t, "vnbt-nbd-kit-");
    const trigger = join(dir, "inject");
    const k = await startNbdkit(t, {
      plugin: "memory",
      args: ["8M", "error-pread=EIO", "error-pread-rate=100%", `error-pread-file=${trigger}`, "error-pwrite=ENOSPC", "error-pwrite-rate=100%", `error-pwrite-file=${trigger}`, "error-extents=EIO", "error-extents-rate=100%", `error-extents-file=${trigger}`],
      filters: ["error"],
      exportName: "vdb",
    });
    const c = await open(t, { uri: `nbd+unix:///vdb?socket=${k.socket}`, metaContexts: [BASE_ALLOCATION] });
    await c.write(0, Buffer.alloc(MiB, 0x42));
    await writeFile(trigger, "");
    await assert.rejects(c.read(4096, 65536), (e: unknown) => {
      assert.ok(e instanceof NbdRequestError);
      assert.equal(e.code, "EIO");
      assert.match(e.message, /^NBD read at offset 4096 \(65536 bytes\) failed: EIO \(Input\/output error\).* \[export 'vdb'\]$/);
      return true;
    });
    await assert.rejects(c.write(0, Buffer.alloc(512)), (e: unknown) => e instanceof NbdRequestError && e.code === "ENOSPC");
    await assert.rejects(all(backupExtents(c)), /block-status at offset 0 .* failed: EIO/);
    // Many reads in flight, all failing, none lost.
    const rs = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => c.read(i * 4096, 4096)));
    assert.ok(rs.every((r) => r.status === "rejected" && r.reason instanceof NbdRequestError));
    await rm(trigger);
    assert.ok((await c.read(0, MiB)).equals(Buffer.alloc(MiB, 0x42)));
    await c.disconnect();
  });

  it("error filter at 50%: every pipelined read either succeeds with the right data or fails with EIO", async (t) => {
    const k = await startNbdkit(t, { plugin: "pattern", args: ["16M", "error-pread=EIO", "error-pread-rate=50%"], filters: ["error"] });
    const c = await open(t, { uri: k.uri });
    const rs = await Promise.allSettled(Array.from({ length: 200 }, (_, i) => c.read(i * 64 * KiB, 64 * KiB)));
    let ok = 0;
    rs.forEach((r, i) => {
      if (r.status === "fulfilled") {
        ok++;
        // The pattern plugin stores each 8-byte offset big-endian at that offset.
        assert.equal(Number(r.value.readBigUInt64BE(0)), i * 64 * KiB);
      } else assert.ok(r.reason instanceof NbdRequestError && r.reason.code === "EIO");
    });
    assert.ok(ok > 20 && ok < 180, `${ok} succeeded`);
    await c.disconnect();
  });

  it("delay filter: requests are pipelined, bounded by the in-flight limits", async (t) => {
    const k = await startNbdkit(t, { plugin: "memory", args: ["16M", "delay-read=200ms"], filters: ["delay"], threads: 32 });
    const c = await open(t, { uri: k.uri });
    let t0 = Date.now();
    await Promise.all(Array.from({ length: 20 }, (_, i) => c.read(i * 512 * KiB, 4096)));
    const parallel = Date.now() - t0;
    assert.ok(parallel < 1500, `20 delayed reads took ${parallel} ms`);
    const narrow = await open(t, { uri: k.uri, maxRequestsInFlight: 4 });
    t0 = Date.now();
    await Promise.all(Array.from({ length: 12 }, (_, i) => narrow.read(i * 512 * KiB, 4096)));
    const bounded = Date.now() - t0;
    assert.ok(bounded >= 550, `12 reads, 4 at a time, took only ${bounded} ms`);
    const bytes = await open(t, { uri: k.uri, maxBytesInFlight: 2 * MiB });
    t0 = Date.now();
    await Promise.all(Array.from({ length: 4 }, (_, i) => bytes.read(i * 2 * MiB, 2 * MiB)));
    assert.ok(Date.now() - t0 >= 750, "2 MiB reads with a 2 MiB budget must go one at a time");
  });

  it("a killed server fails every pending request with a clear error", async (t) => {
    const k = await startNbdkit(t, { plugin: "memory", args: ["16M", "delay-read=5"], filters: ["delay"], exportName: "sdc" });
    const c = await open(t, { uri: `nbd+unix:///sdc?socket=${k.socket}` });
    const pending = Array.from({ length: 8 }, (_, i) => c.read(i * MiB, MiB));
    setTimeout(() => k.kill(), 100);
    const t0 = Date.now();
    for (const p of pending) {
      await assert.rejects(p, (e: unknown) => {
        assert.ok(e instanceof NbdConnectionError);
        // Reported per wire request (reads are split into 256 KiB pieces).
        assert.match(e.message, /^NBD read at offset \d+ \(262144 bytes\) failed: connection to NBD server \(unix socket .*\) lost: .* \[export 'sdc'\]$/);
        return true;
      });
    }
    assert.ok(Date.now() - t0 < 3000);
    await assert.rejects(c.read(0, 1), NbdConnectionError);
  });

  it("TCP with TLS required", async (t) => {
    const pki = await makeTlsCerts(t);
    const k = await startNbdkit(t, { plugin: "pattern", args: ["1M"], tcp: true, tlsDir: pki });
    const c = await open(t, { uri: `nbds://localhost:${k.port}/`, tls: { certDir: pki } });
    assert.equal(c.info.tls, true);
    assert.equal(Number((await c.read(65536, 8)).readBigUInt64BE(0)), 65536);
    await c.disconnect();
    await assert.rejects(connect({ uri: `nbd://127.0.0.1:${k.port}/`, intervalMs: 1 }), /requires TLS/);
  });
});
