/**
 * Fuzzing the parsers with random and mutated bytes: no exception escapes, nothing hangs,
 * connections close cleanly, and nothing is allocated from peer-announced lengths.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { join } from "node:path";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { MemoryBackend, NbdClient, NbdServer, BASE_ALLOCATION, NbdError, NbdProtocolError } from "../../src/nbd/index.js";
import { Cmd } from "../../src/nbd/protocol.js";
import { newPendingRequest, ReplyParser, type PendingRequest } from "../../src/nbd/reply-parser.js";
import { RequestParser } from "../../src/nbd/request-parser.js";
import {
  clientTranscript,
  dataChunk,
  errorChunk,
  greeting,
  holeChunk,
  mutate,
  noneChunk,
  optionReply,
  pattern,
  prng,
  request,
  serverTranscript,
  simple,
  statusChunk,
} from "../helpers/nbd-wire.js";
import { tempDir } from "../helpers/tmp.js";

const FUZZ_MS = Number(process.env["VNBT_FUZZ_MS"] ?? 1500);

function validReplyStream(): Buffer {
  return Buffer.concat([
    dataChunk(1, 0, pattern(100), false),
    holeChunk(1, 100, 28, false),
    noneChunk(1),
    statusChunk(2, 1, [[4096, 0], [4096, 3]], false),
    statusChunk(2, 2, [[8192, 1]], true),
    errorChunk(3, 5, "boom", true),
    simple(4, 0),
    errorChunk(5, 22, "x", false, 0),
    dataChunk(5, 0, pattern(16), true),
  ]);
}

describe("nbd fuzz", () => {
  it("reply parser survives random and mutated input", () => {
    const rnd = prng(0xc0ffee);
    const seed = validReplyStream();
    const deadline = Date.now() + FUZZ_MS;
    let runs = 0;
    while (Date.now() < deadline) {
      runs++;
      const structured = rnd(8) !== 0;
      const pending = new Map<number, PendingRequest>();
      const add = (cmd: number, off: number, len: number): void => {
        const r = newPendingRequest(pending.size + 1, cmd, off, len, cmd === Cmd.READ ? Buffer.alloc(len) : null);
        pending.set(r.cookie, r);
      };
      add(Cmd.READ, 0, 128);
      add(Cmd.BLOCK_STATUS, 0, 8192);
      add(Cmd.WRITE, 0, 10);
      add(Cmd.FLUSH, 0, 0);
      add(Cmd.READ, 0, 16);
      let failed = 0;
      const done: PendingRequest[] = [];
      const p = new ReplyParser(
        {
          lookup: (c) => pending.get(c),
          complete: (r) => {
            assert.ok(pending.delete(r.cookie), "completed twice");
            done.push(r);
          },
          protocolError: () => failed++,
        },
        { structured, contextIds: new Set([1, 2]), maxDescriptors: 64 },
      );
      let input: Buffer;
      if (rnd(3) === 0) {
        input = Buffer.alloc(rnd(300));
        for (let i = 0; i < input.length; i++) input[i] = rnd(256);
      } else input = mutate(seed, rnd);
      let pos = 0;
      while (pos < input.length) {
        const t = p.readTarget();
        if (t && rnd(2) === 0) {
          const n = Math.min(t.length, input.length - pos, 1 + rnd(64));
          input.copy(t, 0, pos, pos + n);
          p.filledTarget(n);
          pos += n;
        } else {
          const n = Math.min(input.length - pos, 1 + rnd(64));
          p.feed(input, pos, pos + n);
          pos += n;
        }
      }
      assert.ok(failed <= 1, "protocolError reported more than once");
      for (const r of done) {
        if (r.status) {
          for (const flat of r.status.values()) {
            assert.ok(flat.length / 2 <= 64);
            assert.ok(flat.reduce((s, v, i) => (i % 2 ? s : s + v), 0) <= r.length);
          }
        }
      }
    }
    assert.ok(runs > 100);
  });

  it("request parser survives random and mutated input", () => {
    const rnd = prng(42);
    const seed = Buffer.concat([
      request(Cmd.READ, 1, 0, 4096),
      request(Cmd.WRITE, 2, 4096, 10, 1, pattern(10)),
      request(Cmd.BLOCK_STATUS, 3, 0, 65536, 8),
      request(Cmd.DISC, 4, 0, 0),
    ]);
    const deadline = Date.now() + FUZZ_MS;
    let requests = 0;
    while (Date.now() < deadline) {
      const max = 1 << 16;
      let errors = 0;
      const p = new RequestParser(
        {
          allocPayload: (n) => {
            assert.ok(n <= max, `allocation of ${n}`);
            return Buffer.alloc(n);
          },
          onRequest: (r) => {
            requests++;
            if (r.payload) assert.equal(r.payload.length, r.length);
            if (r.type === Cmd.WRITE && r.length > max) assert.ok(r.oversized);
            return rnd(4) !== 0;
          },
          onError: () => errors++,
        },
        max,
      );
      const input = rnd(3) === 0 ? Buffer.from(Array.from({ length: rnd(200) }, () => rnd(256))) : mutate(seed, rnd);
      let pos = 0;
      let guard = 0;
      while (pos < input.length && !p.stopped) {
        const end = Math.min(input.length, pos + 1 + rnd(50));
        const used = p.feed(input, pos, end);
        assert.ok(used >= pos && used <= end);
        pos = used;
        assert.ok(++guard < 100000, "parser made no progress");
      }
      assert.ok(errors <= 1);
    }
    assert.ok(requests > 100);
  });

  it("server closes hostile connections cleanly and keeps serving", async (t) => {
    const dir = await tempDir(t, "vnbt-nbd-fuzz-");
    const socket = join(dir, "s.sock");
    const mem = new MemoryBackend(1 << 20);
    mem.write(0, pattern(1 << 20, 3));
    const server = new NbdServer({ exports: { d: mem }, maxRequestSize: 1 << 16 });
    await server.listen({ path: socket });
    t.after(() => server.close());
    const rnd = prng(7);
    const valid = Buffer.concat([
      clientTranscript("d"),
      request(Cmd.READ, 1, 0, 4096),
      request(Cmd.WRITE, 2, 4096, 16, 1, pattern(16)),
      request(Cmd.BLOCK_STATUS, 3, 0, 1 << 20),
      request(Cmd.READ, 4, 0, 1 << 20), // over the limit: EINVAL
      request(Cmd.DISC, 5, 0, 0),
    ]);
    const hostile = [
      // Option data announced as 4 GiB, then silence.
      Buffer.concat([Buffer.from("00000003", "hex"), Buffer.from("49484156454f5054000000070000fff0", "hex")]),
      // A 4 GiB write payload announced.
      Buffer.concat([clientTranscript("d"), request(Cmd.WRITE, 1, 0, 0xffffffff)]),
      // Meta context request with a huge query count.
      Buffer.concat([Buffer.from("00000003", "hex"), Buffer.from("49484156454f5054000000080000000049484156454f50540000000a0000000c00000001640fffffff", "hex")]),
    ];
    const deadline = Date.now() + FUZZ_MS;
    let runs = 0;
    const heapBefore = process.memoryUsage().arrayBuffers;
    while (Date.now() < deadline || runs < 20) {
      runs++;
      const input = runs <= hostile.length ? hostile[runs - 1]! : rnd(4) === 0 ? Buffer.from(Array.from({ length: rnd(400) }, () => rnd(256))) : mutate(valid, rnd);
      await new Promise<void>((resolve) => {
        const s = net.connect(socket);
        s.on("error", () => {});
        s.on("data", () => {});
        s.on("connect", () => s.write(input));
        const timer = setTimeout(() => s.destroy(), 30);
        s.on("close", () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    assert.ok(process.memoryUsage().arrayBuffers - heapBefore < 256 * 1024 * 1024);
    for (let i = 0; i < 50 && server.connectionCount > 0; i++) await sleep(10);
    assert.equal(server.connectionCount, 0);
    const c = await NbdClient.open({ target: { kind: "unix", path: socket }, exportName: "d", metaContexts: [BASE_ALLOCATION] });
    t.after(() => c.close());
    const got = await c.read(100000, 1000);
    assert.equal(got.length, 1000);
    await c.disconnect();
  });

  it("client fails cleanly on hostile servers (handshake and replies)", async (t) => {
    const dir = await tempDir(t, "vnbt-nbd-fuzz-");
    const socket = join(dir, "evil.sock");
    const rnd = prng(99);
    const valid = serverTranscript(1 << 20);
    const replies = validReplyStream();
    let script: { handshake: Buffer; replies: Buffer } = { handshake: valid, replies };
    const srv = net.createServer((s) => {
      s.on("error", () => {});
      const { handshake, replies: r } = script;
      let gotRequest = false;
      s.write(handshake);
      s.on("data", (d) => {
        // Requests start after the 4 flag bytes and options; answer the first request burst.
        if (!gotRequest && d.length >= 28 && d.readUInt32BE(d.length - 28) === 0x25609513) {
          gotRequest = true;
          s.end(r);
        }
      });
      setTimeout(() => s.destroy(), 200);
    });
    await new Promise<void>((r) => srv.listen(socket, r));
    t.after(() => new Promise<void>((r) => srv.close(() => r())));
    const deadline = Date.now() + FUZZ_MS;
    let runs = 0;
    let opened = 0;
    while (Date.now() < deadline || runs < 20) {
      runs++;
      const which = rnd(3);
      script = {
        handshake: which === 0 ? mutate(valid, rnd) : valid,
        replies: which === 0 ? replies : which === 1 ? mutate(replies, rnd) : Buffer.from(Array.from({ length: rnd(200) }, () => rnd(256))),
      };
      let c: NbdClient;
      try {
        c = await NbdClient.open({ target: { kind: "unix", path: socket }, exportName: "x", metaContexts: [BASE_ALLOCATION] });
      } catch (e) {
        assert.ok(e instanceof Error);
        continue;
      }
      opened++;
      const results = await Promise.allSettled([c.read(0, 128), c.read(0, 16), c.flush(), c.blockStatus(0, 8192)]);
      for (const r of results) {
        if (r.status === "rejected") assert.ok(r.reason instanceof NbdError || r.reason instanceof RangeError, String(r.reason));
      }
      c.close();
    }
    assert.ok(opened > 0);
  });

  it("server stops taking requests from a client that does not read its replies", async (t) => {
    const dir = await tempDir(t, "vnbt-nbd-fuzz-");
    const socket = join(dir, "bp.sock");
    const mem = new MemoryBackend(64 << 20);
    mem.write(0, Buffer.alloc(64 << 20, 1));
    const server = new NbdServer({ exports: { d: mem }, sparseReads: false });
    await server.listen({ path: socket });
    t.after(() => server.close());
    const N = 256;
    const s = net.connect(socket);
    t.after(() => s.destroy());
    await new Promise<void>((r) => s.once("connect", () => r()));
    s.pause();
    const reqs = [clientTranscript("d")];
    for (let i = 0; i < N; i++) reqs.push(request(Cmd.READ, i + 1, (i % 64) << 20, 1 << 20));
    s.write(Buffer.concat(reqs));
    const before = process.memoryUsage().arrayBuffers;
    await sleep(700);
    const grown = process.memoryUsage().arrayBuffers - before;
    assert.ok(grown < 128 << 20, `server buffered ${grown >> 20} MiB for a client that does not read`);
    // Reading resumes the flow: every reply arrives.
    let got = 0;
    await new Promise<void>((resolve) => {
      s.on("data", (d: Buffer) => {
        got += d.length;
        if (got >= N * ((1 << 20) + 28)) resolve();
      });
      s.resume();
    });
    assert.ok(got >= N * ((1 << 20) + 28));
  });

  it("client refuses huge lengths announced during negotiation without allocating them", async (t) => {
    const dir = await tempDir(t, "vnbt-nbd-fuzz-");
    const socket = join(dir, "huge.sock");
    const hugeReply = Buffer.concat([greeting(), optionReply(8, 1), Buffer.from("0003e889045565a9" + "0000000a" + "00000004" + "fffffff0", "hex")]);
    const srv = net.createServer((s) => {
      s.on("error", () => {});
      s.resume(); // read (and drop) whatever the client sends, so its close is noticed
      s.write(hugeReply);
      // Then keep the connection open and silent: the client must not wait for 4 GiB.
    });
    await new Promise<void>((r) => srv.listen(socket, r));
    t.after(() => new Promise<void>((r) => srv.close(() => r())));
    const before = process.memoryUsage().arrayBuffers;
    const t0 = Date.now();
    await assert.rejects(
      NbdClient.open({ target: { kind: "unix", path: socket }, exportName: "x", metaContexts: [BASE_ALLOCATION], handshakeTimeoutMs: 5000 }),
      (e: unknown) => e instanceof NbdProtocolError && /option reply of 4294967280 bytes/.test(e.message),
    );
    assert.ok(Date.now() - t0 < 1000);
    assert.ok(process.memoryUsage().arrayBuffers - before < 16 << 20);
  });
});
