/** Our client against our server, in process (unix sockets in a temp dir). */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import net from "node:net";
import {
  backupExtents,
  BASE_ALLOCATION,
  connect,
  Errno,
  listExports,
  listMetaContexts,
  MemoryBackend,
  queryExportInfo,
  NbdBackendError,
  NbdClient,
  NbdConnectAborted,
  NbdConnectionError,
  NbdConnectionTimeout,
  NbdHandshakeError,
  NbdRequestError,
  NbdServer,
  type NbdBackend,
  type ServerOptions,
} from "../../src/nbd/index.js";
import { nbdReader, nbdWriter } from "../../src/pipeline/nbd-endpoints.js";
import { pattern } from "../helpers/nbd-wire.js";
import { tempDir } from "../helpers/tmp.js";

const MiB = 1024 * 1024;

async function serve(t: TestContext, exports: Record<string, NbdBackend>, opts: Partial<ServerOptions> = {}): Promise<{ server: NbdServer; socket: string }> {
  const dir = await tempDir(t, "vnbt-nbd-");
  const socket = join(dir, "nbd.sock");
  const server = new NbdServer({ exports, ...opts });
  await server.listen({ path: socket });
  t.after(() => server.close());
  return { server, socket };
}

async function client(t: TestContext, socket: string, exportName: string, extra: Partial<Parameters<typeof NbdClient.open>[0]> = {}): Promise<NbdClient> {
  const c = await NbdClient.open({ target: { kind: "unix", path: socket }, exportName, metaContexts: [BASE_ALLOCATION], ...extra });
  t.after(() => c.close());
  return c;
}

describe("nbd client <-> server", () => {
  it("negotiates and reports the export", async (t) => {
    const mem = new MemoryBackend(8 * MiB, { description: "scratch" });
    const { socket } = await serve(t, { disk: mem, ro: new MemoryBackend(MiB, { readOnly: true }) });
    const c = await client(t, socket, "disk");
    assert.equal(c.size, 8 * MiB);
    assert.equal(c.info.readOnly, false);
    assert.equal(c.info.structuredReplies, true);
    assert.equal(c.info.canMultiConn, true);
    assert.equal(c.info.canFlush, true);
    assert.equal(c.info.canTrim, true);
    assert.equal(c.info.canWriteZeroes, true);
    assert.equal(c.info.maxBlockSize, 32 * MiB);
    assert.equal(c.info.maxRequestSize, 32 * MiB);
    assert.deepEqual([...c.info.metaContexts.keys()], [BASE_ALLOCATION]);
    assert.equal(c.uri, `nbd+unix:///disk?socket=${socket}`);
    const ro = await client(t, socket, "ro");
    assert.equal(ro.info.readOnly, true);
    await assert.rejects(ro.write(0, Buffer.alloc(1)), /read-only/);
    const list = await listExports({ target: { kind: "unix", path: socket } });
    assert.deepEqual(list.map((e) => e.name).sort(), ["disk", "ro"]);
    assert.equal(list.find((e) => e.name === "disk")!.description, "scratch");
    assert.deepEqual(await listMetaContexts({ target: { kind: "unix", path: socket }, exportName: "disk" }), [BASE_ALLOCATION]);
    const info = await queryExportInfo({ target: { kind: "unix", path: socket }, exportName: "disk" });
    assert.equal(info.size, 8 * MiB);
    assert.equal(info.description, "scratch");
    assert.equal(info.canTrim, true);
    await assert.rejects(queryExportInfo({ target: { kind: "unix", path: socket }, exportName: "zz" }), /'zz' not found/);
    await assert.rejects(client(t, socket, "nope"), (e: unknown) => e instanceof NbdHandshakeError && /'nope' not found/.test(e.message));
  });

  it("writes, reads back, zeroes, trims, flushes, reports extents", async (t) => {
    const mem = new MemoryBackend(16 * MiB);
    const { socket } = await serve(t, { d: mem });
    const c = await client(t, socket, "d");
    const data = pattern(3 * MiB + 123, 9);
    await c.write(MiB - 7, data, { fua: true });
    assert.equal(mem.flushes, Math.ceil(data.length / (256 * 1024)), "one FUA per 256 KiB wire request");
    assert.deepEqual(await c.read(MiB - 7, data.length), data);
    const into = Buffer.alloc(100);
    const got = await c.read(MiB - 7, 50, into);
    assert.equal(got.buffer, into.buffer);
    assert.deepEqual(got, data.subarray(0, 50));
    await c.writeZeroes(2 * MiB, MiB, { fastZero: true, noHole: true });
    const z = await c.read(2 * MiB - 1, MiB + 2);
    assert.equal(z[0], data[MiB + 6]);
    assert.ok(z.subarray(1, MiB + 1).every((b) => b === 0));
    await c.trim(0, 16 * MiB);
    await c.flush();
    assert.equal(mem.allocatedBytes, 0);
    await c.write(5 * MiB, Buffer.alloc(64 * 1024, 1));
    await c.cache(0, MiB);
    const bs = await c.blockStatus(0, c.size);
    assert.deepEqual(bs.contexts.get(BASE_ALLOCATION), [5 * MiB, 3, 64 * 1024, 0, 11 * MiB - 64 * 1024, 3]);
    const one = await c.blockStatus(0, c.size, { reqOne: true });
    assert.deepEqual(one.contexts.get(BASE_ALLOCATION), [5 * MiB, 3]);
    const ext = [];
    for await (const e of backupExtents(c)) ext.push(e);
    assert.deepEqual(ext, [
      { offset: 0, length: 5 * MiB, data: false, dirty: null },
      { offset: 5 * MiB, length: 64 * 1024, data: true, dirty: null },
      { offset: 5 * MiB + 64 * 1024, length: 11 * MiB - 64 * 1024, data: false, dirty: null },
    ]);
    // Reads over holes come back as hole chunks, data as data.
    assert.deepEqual(await c.read(5 * MiB - 10, 20), Buffer.concat([Buffer.alloc(10), Buffer.alloc(10, 1)]));
    await c.disconnect();
    await assert.rejects(c.read(0, 1), NbdConnectionError);
  });

  it("works with simple replies only", async (t) => {
    const mem = new MemoryBackend(4 * MiB);
    const { socket } = await serve(t, { d: mem });
    const c = await client(t, socket, "d", { structuredReplies: false });
    assert.equal(c.info.structuredReplies, false);
    assert.equal(c.info.canDf, false);
    const data = pattern(MiB, 3);
    await c.write(123, data);
    assert.deepEqual(await c.read(123, MiB), data);
    await assert.rejects(c.blockStatus(0, 10), /no meta context/);
    const bad: NbdBackend = { size: 4096, read: () => Promise.reject(new NbdBackendError(Errno.EIO, "bad sector")) };
    const s2 = await serve(t, { bad });
    const c2 = await client(t, s2.socket, "bad", { structuredReplies: false });
    await assert.rejects(c2.read(0, 512), (e: unknown) => e instanceof NbdRequestError && e.code === "EIO");
    // The connection survives the error.
    await assert.rejects(c2.read(512, 512), NbdRequestError);
  });

  it("turns server errors into messages naming errno, offset and export", async (t) => {
    const bad: NbdBackend = {
      size: MiB,
      read: (off) => {
        if (off >= 4096 && off < 8192) throw new NbdBackendError(Errno.EIO, "disk on fire");
      },
      write: () => {
        throw Object.assign(new Error("quota"), { code: "EDQUOT" });
      },
    };
    const { socket } = await serve(t, { vda: bad });
    const c = await client(t, socket, "vda");
    await assert.rejects(c.read(4096, 65536), {
      name: "NbdRequestError",
      message: "NBD read at offset 4096 (65536 bytes) failed: EIO (Input/output error): read failed: disk on fire [export 'vda']",
    });
    await assert.rejects(c.write(0, Buffer.alloc(10)), /write at offset 0 \(10 bytes\) failed: ENOSPC/);
    // Zeroing without backend support: emulated with writes, never "fast".
    assert.equal(c.info.canWriteZeroes, true);
    assert.equal(c.info.canFastZero, false);
    await assert.rejects(c.writeZeroes(0, 4096, { fastZero: true }), /no fast zero support/);
    await assert.rejects(c.writeZeroes(0, 4096), /write at offset 0 \(4096 bytes\) failed: ENOSPC|write-zeroes at offset 0 \(4096 bytes\) failed: ENOSPC/);
    assert.equal((await c.read(0, 4096)).length, 4096);
    await assert.rejects(c.read(MiB - 1, 2), RangeError);
  });

  it("splits large requests at the server's maximum and keeps several in flight", async (t) => {
    const mem = new MemoryBackend(64 * MiB);
    let active = 0;
    let peak = 0;
    let calls = 0;
    const slow: NbdBackend = {
      size: mem.size,
      blockSize: { minimum: 512, preferred: 4096, maximum: MiB },
      read: async (o, l, into) => {
        calls++;
        active++;
        peak = Math.max(peak, active);
        await sleep(5);
        mem.read(o, l, into);
        active--;
      },
      write: (o, d) => mem.write(o, d),
    };
    const { socket } = await serve(t, { s: slow });
    const c = await client(t, socket, "s", { maxBytesInFlight: 4 * MiB, requestSize: 8 * MiB });
    assert.equal(c.info.maxRequestSize, MiB);
    assert.equal(c.maxIo, MiB);
    assert.equal(c.requestSize, MiB);
    assert.equal(c.info.minBlockSize, 512);
    const data = pattern(10 * MiB, 5);
    await c.write(0, data);
    const got = await c.read(0, 10 * MiB);
    assert.deepEqual(got, data);
    assert.equal(calls, 10);
    assert.ok(peak >= 2 && peak <= 4, `peak ${peak}`);
    // Many small reads in flight at once, answered out of order.
    calls = 0;
    peak = 0;
    const reads = Array.from({ length: 100 }, (_, i) => c.read(i * 4096, 4096));
    const all = await Promise.all(reads);
    all.forEach((b, i) => assert.deepEqual(b, data.subarray(i * 4096, (i + 1) * 4096)));
    assert.ok(peak > 4, `peak ${peak}`);
    // By default reads go out in 256 KiB requests.
    const d = await client(t, socket, "s");
    assert.equal(d.maxIo, MiB, "maxIo stays the server's limit (stream chunking follows it)");
    assert.equal(d.requestSize, 256 * 1024);
    calls = 0;
    assert.deepEqual(await d.read(0, 2 * MiB), data.subarray(0, 2 * MiB));
    assert.equal(calls, 8);
  });

  it("openTogether: the extra connections negotiate beside the first, and go again when the server allows one", async (t) => {
    const { server, socket } = await serve(t, { m: new MemoryBackend(MiB) });
    const c = await client(t, socket, "m", { connections: 3, openTogether: true });
    assert.equal(c.connections.length, 3);
    assert.equal(server.connectionCount, 3);
    const single: NbdBackend = { size: MiB, canMultiConn: false, read: () => {} };
    const s2 = await serve(t, { x: single });
    const c2 = await client(t, s2.socket, "x", { connections: 3, openTogether: true });
    assert.equal(c2.connections.length, 1);
    for (let i = 0; i < 100 && s2.server.connectionCount > 1; i++) await sleep(10);
    assert.equal(s2.server.connectionCount, 1, "the extras are closed");
    assert.equal((await c2.read(0, 4096)).length, 4096, "the first connection still serves");
    // Every connection refused alike (an unknown export here, a TLS refusal in remote-errors):
    // the first's error, and the extras' failures are no unhandled rejections.
    await assert.rejects(client(t, socket, "missing", { connections: 3, openTogether: true }), NbdHandshakeError);
    await sleep(50);
  });

  it("spreads requests over several connections when multi-conn is allowed", async (t) => {
    const mem = new MemoryBackend(8 * MiB);
    const { server, socket } = await serve(t, { m: mem });
    const c = await client(t, socket, "m", { connections: 3 });
    assert.equal(c.connections.length, 3);
    assert.equal(server.connectionCount, 3);
    const data = pattern(8 * MiB, 1);
    await Promise.all(Array.from({ length: 8 }, (_, i) => c.write(i * MiB, data.subarray(i * MiB, (i + 1) * MiB))));
    await c.flush();
    assert.deepEqual(await c.read(0, 8 * MiB), data);
    const single: NbdBackend = { size: MiB, canMultiConn: false, read: () => {} };
    const s2 = await serve(t, { x: single });
    const c2 = await client(t, s2.socket, "x", { connections: 4 });
    assert.equal(c2.connections.length, 1);
    await c.disconnect();
    await sleep(20);
    assert.equal(server.connectionCount, 0);
  });

  it("fails every pending request when the connection is lost", async (t) => {
    let hang = true;
    const stuck: NbdBackend = {
      size: MiB,
      read: async () => {
        while (hang) await sleep(5);
      },
      blockStatus: async (_o, l) => {
        while (hang) await sleep(5);
        return [{ length: l, flags: 0 }];
      },
    };
    t.after(() => {
      hang = false;
    });
    const { server, socket } = await serve(t, { s: stuck });
    const c = await client(t, socket, "s");
    const pending = [c.read(0, 100), c.read(4096, 100), c.blockStatus(0, 100)];
    await sleep(30);
    await server.close();
    for (const p of pending) {
      await assert.rejects(p, (e: unknown) => {
        assert.ok(e instanceof NbdConnectionError);
        assert.match(e.message, /^NBD (read|block-status) at offset \d+ \(100 bytes\) failed: connection to NBD server \(unix socket .*\) lost: server closed the connection \[export 's'\]$/);
        return true;
      });
    }
    await assert.rejects(c.read(0, 1), /lost/);
  });

  it("connect() waits for the socket and times out like upstream", async (t) => {
    const dir = await tempDir(t, "vnbt-nbd-");
    const socket = join(dir, "late.sock");
    const server = new NbdServer({ exports: { late: new MemoryBackend(MiB) } });
    t.after(() => server.close());
    setTimeout(() => void server.listen({ path: socket }), 150);
    const msgs: string[] = [];
    const c = await connect({ uri: `nbd+unix:///late?socket=${socket}`, intervalMs: 50, attempts: 20, log: (_l, m) => msgs.push(m) });
    t.after(() => c.close());
    assert.equal(c.size, MiB);
    assert.equal(msgs[0], `Waiting until NBD server at [nbd+unix:///late?socket=${socket}] is up.`);
    assert.ok(msgs.includes("Waiting for NBD Server, Retry: 0"));
    assert.equal(msgs.at(-1), "Connection to NBD backend succeeded.");
    const t0 = Date.now();
    await assert.rejects(
      connect({ uri: `nbd+unix:///x?socket=${join(dir, "never.sock")}`, intervalMs: 10, attempts: 5 }),
      (e: unknown) => e instanceof NbdConnectionTimeout && e.message === "Timeout during connection to NBD server backend.",
    );
    assert.ok(Date.now() - t0 >= 40); // the first attempt is immediate, four retries wait 10 ms each
    // A definite refusal is not retried.
    await assert.rejects(connect({ uri: `nbd+unix:///nope?socket=${socket}`, intervalMs: 10 }), NbdHandshakeError);
  });

  it("serves the default export for the empty name", async (t) => {
    const { socket } = await serve(t, { sda: new MemoryBackend(2 * MiB) }, { defaultExport: "sda" });
    const c = await client(t, socket, "");
    assert.equal(c.size, 2 * MiB);
  });

  it("gives up on a server that never negotiates", async (t) => {
    const dir = await tempDir(t, "vnbt-nbd-");
    const socket = join(dir, "mute.sock");
    const mute = net.createServer(() => {});
    await new Promise<void>((r) => mute.listen(socket, r));
    t.after(() => new Promise<void>((r) => mute.close(() => r())));
    await assert.rejects(
      NbdClient.open({ target: { kind: "unix", path: socket }, exportName: "x", handshakeTimeoutMs: 100 }),
      (e: unknown) => e instanceof NbdHandshakeError && /did not complete negotiation within 100 ms/.test(e.message),
    );
  });

  it("an abort mid-handshake closes the socket at once; an abort between retries stops them", async (t) => {
    const dir = await tempDir(t, "vnbt-nbd-");
    const socket = join(dir, "mute.sock");
    let peerClosed: Promise<number> | null = null;
    const mute = net.createServer((s) => {
      s.on("error", () => undefined);
      peerClosed = new Promise((r) => s.on("close", () => r(Date.now())));
    });
    await new Promise<void>((r) => mute.listen(socket, r));
    t.after(() => new Promise<void>((r) => mute.close(() => r())));
    const ac = new AbortController();
    const opening = connect({ uri: `nbd+unix:///x?socket=${socket}`, signal: ac.signal, intervalMs: 10 });
    while (!peerClosed) await sleep(5);
    const abortedAt = Date.now();
    ac.abort();
    await assert.rejects(opening, NbdConnectAborted);
    // The server side sees the close right away (not after the 30 s handshake timeout).
    assert.ok((await peerClosed) - abortedAt < 1000);

    const retrying = new AbortController();
    const t0 = Date.now();
    const waiting = connect({ uri: `nbd+unix:///x?socket=${join(dir, "never.sock")}`, signal: retrying.signal, intervalMs: 10_000, attempts: 5 });
    setTimeout(() => retrying.abort(), 50);
    await assert.rejects(waiting, NbdConnectAborted);
    assert.ok(Date.now() - t0 < 5000);
    // Already aborted: no connection is made at all.
    await assert.rejects(NbdClient.open({ target: { kind: "unix", path: socket }, exportName: "x", signal: retrying.signal }), NbdConnectAborted);
  });

  it("flush waits for the writes in flight, failed ones too", async (t) => {
    const events: string[] = [];
    let writes = 0;
    const slow: NbdBackend = {
      size: MiB,
      read: (_o, _l, into) => void into.fill(0),
      write: async (offset) => {
        const n = ++writes;
        await sleep(30);
        events.push(`write ${n}`);
        if (offset === 0) throw new NbdBackendError(Errno.EIO, "bad sector");
      },
      flush: () => void events.push("flush"),
    };
    const { socket } = await serve(t, { d: slow });
    const c = await client(t, socket, "d");
    const failing = c.write(0, Buffer.alloc(4096));
    failing.catch(() => undefined);
    const fine = c.write(4096, Buffer.alloc(4096));
    await c.flush();
    assert.deepEqual(events, ["write 1", "write 2", "flush"]);
    await assert.rejects(failing, /EIO/);
    await fine;
  });

  it("answers reads from a backend's own memory (readView) without a reply buffer, and gives it back once sent", async (t) => {
    const disk = pattern(4 * MiB, 3);
    const lent = new Set<Buffer>();
    let reads = 0;
    let views = 0;
    const backend: NbdBackend = {
      size: disk.length,
      read: (offset, length, into) => {
        reads++;
        disk.copy(into, 0, offset, offset + length);
      },
      // Views inside the first 2 MiB only; a failing range; the rest through read().
      readView: (offset, length) => {
        if (offset >= 3 * MiB) return Promise.reject(new NbdBackendError(Errno.EIO, "bad frame"));
        if (offset + length > 2 * MiB) return null;
        const data = disk.subarray(offset, offset + length);
        lent.add(data);
        views++;
        return sleep(1).then(() => ({ data, release: () => void lent.delete(data) }));
      },
    };
    const { server, socket } = await serve(t, { d: backend });
    for (const structuredReplies of [true, false]) {
      const c = await client(t, socket, "d", { structuredReplies });
      const got = await Promise.all([0, 64 * 1024, MiB, 2 * MiB - 4096, 2 * MiB].map((o) => c.read(o, 128 * 1024)));
      for (const [i, o] of [0, 64 * 1024, MiB, 2 * MiB - 4096, 2 * MiB].entries()) assert.deepEqual(got[i], disk.subarray(o, o + 128 * 1024));
      await assert.rejects(c.read(3 * MiB, 4096), /EIO/);
    }
    assert.equal(views, 6, "three reads per client were lent");
    assert.equal(reads, 4, "the others read into buffers");
    await sleep(10);
    assert.equal(lent.size, 0, "every view given back once its reply was sent");
    const replyBuffers = server.buffers.acquire(28 + 128 * 1024);
    assert.equal(replyBuffers.length, 128 * 1024 + 28, "reply buffers: a power of two plus the header");
  });

  it("adapts to the copy engines' reader/writer interfaces", async (t) => {
    const mem = new MemoryBackend(4 * MiB);
    const { socket } = await serve(t, { d: mem });
    const c = await client(t, socket, "d");
    const w = nbdWriter(c);
    await w.write(4096, Buffer.alloc(8192, 7));
    await w.zero(8192, 4096);
    await w.flush();
    const into = Buffer.alloc(12288);
    await nbdReader(c).read(0, into);
    assert.deepEqual(into, Buffer.concat([Buffer.alloc(4096), Buffer.alloc(4096, 7), Buffer.alloc(4096)]));
    assert.equal(mem.flushes, 1);
  });
});
