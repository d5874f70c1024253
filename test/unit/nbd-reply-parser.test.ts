import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Cmd, encodeStructuredHeader, ReplyType } from "../../src/nbd/protocol.js";
import { newPendingRequest, ReplyParser, type PendingRequest } from "../../src/nbd/reply-parser.js";
import { dataChunk, errorChunk, holeChunk, noneChunk, pattern, simple, statusChunk } from "../helpers/nbd-wire.js";

interface Harness {
  parser: ReplyParser;
  pending: Map<number, PendingRequest>;
  completed: PendingRequest[];
  errors: string[];
  add(cmd: number, offset: number, length: number): PendingRequest;
}

function harness(structured = true, contexts = [1, 2]): Harness {
  const pending = new Map<number, PendingRequest>();
  const completed: PendingRequest[] = [];
  const errors: string[] = [];
  let cookie = 1;
  const parser = new ReplyParser(
    {
      lookup: (c) => pending.get(c),
      complete: (r) => {
        pending.delete(r.cookie);
        completed.push(r);
      },
      protocolError: (m) => errors.push(m),
    },
    { structured, contextIds: new Set(contexts), maxDescriptors: 1000 },
  );
  return {
    parser,
    pending,
    completed,
    errors,
    add(cmd, offset, length) {
      const r = newPendingRequest(cookie++, cmd, offset, length, cmd === Cmd.READ ? Buffer.alloc(length, 0xee) : null);
      pending.set(r.cookie, r);
      return r;
    },
  };
}

/** Feeds `stream` split at every position (and byte by byte), checking the same outcome. */
function feedAllSplits(build: () => Harness, stream: Buffer, check: (h: Harness) => void): void {
  for (let cut = 0; cut <= stream.length; cut += Math.max(1, Math.floor(stream.length / 97))) {
    const h = build();
    h.parser.feed(stream, 0, cut);
    h.parser.feed(stream, cut, stream.length);
    check(h);
  }
  const h = build();
  for (let i = 0; i < stream.length; i++) h.parser.feed(stream, i, i + 1);
  check(h);
}

describe("nbd reply parser", () => {
  it("reads simple replies (with data when structured replies are off)", () => {
    const data = pattern(1000);
    let r1: PendingRequest, r2: PendingRequest;
    const build = (): Harness => {
      const h = harness(false);
      r1 = h.add(Cmd.READ, 0, 1000);
      r2 = h.add(Cmd.WRITE, 0, 10);
      return h;
    };
    const stream = Buffer.concat([simple(2, 0), simple(1, 0, data)]);
    feedAllSplits(build, stream, (h) => {
      assert.deepEqual(h.errors, []);
      assert.equal(h.completed.length, 2);
      assert.equal(h.completed[0], r2);
      assert.deepEqual(r1.into, data);
    });
  });

  it("reports simple reply errors without payload", () => {
    const h = harness(false);
    const r = h.add(Cmd.READ, 0, 100);
    const w = h.add(Cmd.FLUSH, 0, 0);
    const s = Buffer.concat([simple(1, 5), simple(2, 28)]);
    h.parser.feed(s, 0, s.length);
    assert.deepEqual(h.errors, []);
    assert.equal(r.errno, 5);
    assert.equal(w.errno, 28);
  });

  it("assembles structured reads from data and hole chunks in any order", () => {
    const data = pattern(3000, 7);
    const expected = Buffer.from(data);
    expected.fill(0, 1000, 1500);
    let r: PendingRequest;
    const build = (): Harness => {
      const h = harness();
      r = h.add(Cmd.READ, 10000, 3000);
      return h;
    };
    const stream = Buffer.concat([
      dataChunk(1, 11500, data.subarray(1500), false),
      holeChunk(1, 11000, 500, false),
      dataChunk(1, 10000, data.subarray(0, 1000), false),
      noneChunk(1),
    ]);
    feedAllSplits(build, stream, (h) => {
      assert.deepEqual(h.errors, []);
      assert.equal(h.completed.length, 1);
      assert.equal(r.errno, 0);
      assert.deepEqual(r.into, expected);
    });
  });

  it("delivers data straight into the destination via readTarget", () => {
    const h = harness();
    const r = h.add(Cmd.READ, 0, 4096);
    const data = pattern(4096, 3);
    const s = dataChunk(1, 0, data, true);
    h.parser.feed(s, 0, 28 + 10); // header + offset + 10 bytes of data
    const t = h.parser.readTarget();
    assert.ok(t);
    assert.equal(t.length, 4086);
    data.copy(t, 0, 10);
    h.parser.filledTarget(4086);
    assert.equal(h.parser.readTarget(), null);
    assert.equal(h.completed.length, 1);
    assert.deepEqual(r.into, data);
  });

  it("collects block status per context and the first error with its message", () => {
    let bs: PendingRequest, rd: PendingRequest;
    const build = (): Harness => {
      const h = harness();
      bs = h.add(Cmd.BLOCK_STATUS, 0, 1 << 20);
      rd = h.add(Cmd.READ, 0, 512);
      return h;
    };
    const stream = Buffer.concat([
      statusChunk(1, 2, [[4096, 1], [8192, 0]], false),
      errorChunk(2, 5, "injected\nerror", false, 0),
      statusChunk(1, 1, [[65536, 0], [1000, 3]], true),
      errorChunk(2, 22, "second", true),
    ]);
    feedAllSplits(build, stream, (h) => {
      assert.deepEqual(h.errors, []);
      assert.equal(h.completed.length, 2);
      assert.deepEqual(bs.status!.get(1), [65536, 0, 1000, 3]);
      assert.deepEqual(bs.status!.get(2), [4096, 1, 8192, 0]);
      assert.equal(rd.errno, 5);
      assert.equal(rd.errorMessage, "injected error");
      assert.equal(rd.errorOffset, 0);
    });
  });

  it("skips unknown error chunk types and overlong messages", () => {
    const h = harness();
    const r = h.add(Cmd.WRITE, 0, 10);
    const p = Buffer.alloc(6 + 5 + 7);
    p.writeUInt32BE(5, 0);
    p.writeUInt16BE(5, 4);
    p.write("hello", 6);
    const unknown = Buffer.concat([encodeStructuredHeader(1, 0x8005, 0, 1, p.length), p]);
    h.parser.feed(unknown, 0, unknown.length);
    assert.deepEqual(h.errors, []);
    assert.equal(r.errno, 5);
    assert.equal(r.errorMessage, "hello");
    const h2 = harness();
    const r2 = h2.add(Cmd.WRITE, 0, 10);
    const big = errorChunk(1, 5, "m".repeat(6000), true);
    h2.parser.feed(big, 0, big.length);
    assert.deepEqual(h2.errors, []);
    assert.equal(r2.errorMessage.length, 4096);
  });

  const violations: [string, (h: Harness) => Buffer, RegExp][] = [
    ["bad magic", () => Buffer.from("deadbeef00000000000000000000000000000000", "hex"), /magic/],
    ["unknown cookie", () => simple(99, 0), /unknown cookie/],
    ["simple reply to a structured read", (h) => (h.add(Cmd.READ, 0, 10), simple(1, 0)), /simple reply/],
    ["data outside the read", (h) => (h.add(Cmd.READ, 100, 10), dataChunk(1, 105, pattern(10), true)), /outside/],
    ["overlapping chunks", (h) => (h.add(Cmd.READ, 0, 20), Buffer.concat([dataChunk(1, 0, pattern(10), false), holeChunk(1, 5, 10, false)])), /overlapping/],
    ["incomplete read", (h) => (h.add(Cmd.READ, 0, 20), Buffer.concat([dataChunk(1, 0, pattern(10), false), noneChunk(1)])), /10 of 20/],
    ["NONE with a payload", (h) => (h.add(Cmd.FLUSH, 0, 0), Buffer.concat([encodeStructuredHeader(1, 0, 0, 1, 4), Buffer.alloc(4)])), /NONE/],
    ["NONE without DONE", (h) => (h.add(Cmd.FLUSH, 0, 0), encodeStructuredHeader(0, 0, 0, 1, 0)), /DONE/],
    ["status with unknown context", (h) => (h.add(Cmd.BLOCK_STATUS, 0, 100), statusChunk(1, 7, [[10, 0]], true)), /context id 7/],
    ["status beyond the request", (h) => (h.add(Cmd.BLOCK_STATUS, 0, 100), statusChunk(1, 1, [[60, 0], [60, 1]], true)), /more than/],
    ["zero-length descriptor", (h) => (h.add(Cmd.BLOCK_STATUS, 0, 100), statusChunk(1, 1, [[0, 0]], true)), /length 0/],
    ["context twice", (h) => (h.add(Cmd.BLOCK_STATUS, 0, 100), Buffer.concat([statusChunk(1, 1, [[1, 0]], false), statusChunk(1, 1, [[1, 0]], true)])), /twice/],
    ["data chunk for a write", (h) => (h.add(Cmd.WRITE, 0, 100), dataChunk(1, 0, pattern(10), true)), /not a read/],
    ["hostile huge block status", (h) => (h.add(Cmd.BLOCK_STATUS, 0, 100), encodeStructuredHeader(1, ReplyType.BLOCK_STATUS, 0, 1, 0xfffffffc)), /descriptors/],
    ["hostile huge data chunk", (h) => (h.add(Cmd.READ, 0, 100), encodeStructuredHeader(1, ReplyType.OFFSET_DATA, 0, 1, 0xffffffff)), /bad length/],
    ["error message longer than its chunk", (h) => (h.add(Cmd.READ, 0, 100), Buffer.concat([encodeStructuredHeader(1, ReplyType.ERROR, 0, 1, 8), Buffer.from("0000000500ff0000", "hex")])), /exceeds/],
    ["unknown non-error chunk type", (h) => (h.add(Cmd.READ, 0, 100), encodeStructuredHeader(1, 77, 0, 1, 0)), /unknown structured/],
  ];
  for (const [name, make, re] of violations) {
    it(`fails the connection on ${name}`, () => {
      const h = harness();
      const s = make(h);
      h.parser.feed(s, 0, s.length);
      assert.equal(h.errors.length, 1, `errors: ${h.errors.join("; ")}`);
      assert.match(h.errors[0]!, re);
      assert.ok(h.parser.dead);
      // Dead parsers ignore further input.
      h.parser.feed(s, 0, s.length);
      assert.equal(h.errors.length, 1);
    });
  }

  it("rejects structured chunks when structured replies were not negotiated", () => {
    const h = harness(false);
    h.add(Cmd.READ, 0, 10);
    const s = dataChunk(1, 0, pattern(10), true);
    h.parser.feed(s, 0, s.length);
    assert.match(h.errors[0]!, /not negotiated/);
  });
});
