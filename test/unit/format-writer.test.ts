import { test } from "node:test";
import assert from "node:assert/strict";
import { StreamWriter } from "../../src/format/writer.js";
import { lz4Compress, lz4CompressBound } from "../../src/format/lz4.js";
import { Adler32 } from "../../src/format/checksum.js";
import type { StreamMetadata } from "../../src/format/metadata.js";
import { MemorySink } from "../helpers/memory-streams.js";

const CHUNK = 32 * 1024 * 1024;

function exampleMeta(over: Partial<StreamMetadata> = {}): StreamMetadata {
  return {
    virtualSize: 131072,
    dataSize: 32,
    date: "2024-05-01T10:00:00.123456",
    diskName: "vda",
    diskFormat: "qcow2",
    checkpointName: "virtnbdbackup.0",
    compressed: false,
    compressionMethod: "lz4",
    parentCheckpoint: "",
    incremental: false,
    streamVersion: 2,
    ...over,
  };
}

const first = Buffer.from("virtnbd example!");
const second = Buffer.alloc(16, 0xab);

// docs/stream-format.md, "Worked example": the uncompressed stream, byte for byte.
test("uncompressed full stream matches the spec's worked example", async () => {
  const sink = new MemorySink();
  const w = new StreamWriter(sink, { compressed: false, chunkSize: CHUNK });
  await w.meta(exampleMeta());
  await w.beginData(0, 16);
  await w.payload(first);
  await w.endData();
  await w.zero(0x10, 0xfff0);
  await w.beginData(0x10000, 16);
  await w.payload(second);
  await w.endData();
  await w.zero(0x10010, 0xfff0);
  const summary = await w.finish();
  const bytes = sink.bytes();
  assert.equal(bytes.length, 595);
  assert.equal(summary.bytes, 595);
  assert.equal(summary.adler32, 662346540);
  assert.equal(new Adler32().update(bytes).value, 662346540);
  assert.equal(bytes.subarray(0, 40).toString(), "meta 0000000000000000 000000000000013d\r\n");
  assert.equal(bytes.subarray(0x167, 0x167 + 40).toString(), "data 0000000000000000 0000000000000010\r\n");
  assert.equal(bytes.subarray(0x22b).toString(), "stop 0000000000000000 0000000000000000\r\n");
  assert.ok(bytes.subarray(40, 40 + 317).toString().endsWith('"streamVersion": 2\n}'));
});

// docs/stream-format.md, "Worked example": the compressed variant, including both lz4 frames and the trailer.
test("compressed stream matches the spec's worked example", async () => {
  const sink = new MemorySink();
  const w = new StreamWriter(sink, { compressed: true, chunkSize: CHUNK });
  await w.meta(exampleMeta({ compressed: 2 }));
  for (const [start, data] of [[0, first], [0x10000, second]] as const) {
    const out = Buffer.alloc(lz4CompressBound(data.length));
    const n = await lz4Compress(data, out, 2);
    await w.beginData(start, data.length);
    await w.payload(out.subarray(0, n));
    await w.endData();
    await w.zero(start + 16, 0xfff0);
  }
  await w.finish();
  const bytes = sink.bytes();
  assert.equal(bytes.length, 697);
  const secondFrame = Buffer.from(
    "04224d187c40100000000000000069" + "0a00000016ab010050abababab" + "ab8099" + "09d4" + "000000002c7f38d9",
    "hex",
  );
  assert.deepEqual(bytes.subarray(0x1e4 + 40, 0x1e4 + 40 + 41), secondFrame);
  assert.equal(bytes.subarray(0x287).toString(), "[47, 41]\r\ncomp 0000000000000000 0000000000000008\r\n");
});

test("chunked extents get an object trailer entry with the frame lengths", async () => {
  const sink = new MemorySink();
  const w = new StreamWriter(sink, { compressed: true, chunkSize: 8 });
  await w.meta(exampleMeta({ compressed: 2, dataSize: 20, virtualSize: 20 }));
  await w.beginData(0, 16);
  await w.payload(Buffer.alloc(5));
  await w.payload(Buffer.alloc(7));
  await w.endData();
  await w.beginData(16, 4);
  await w.payload(Buffer.alloc(3));
  await w.endData();
  await w.finish();
  const tail = sink.bytes().toString("latin1");
  assert.ok(tail.endsWith('[{"12": [5, 7]}, 3]\r\ncomp 0000000000000000 0000000000000013\r\n'));
});

test("empty incremental stream is meta + stop (+ [] trailer)", async () => {
  const sink = new MemorySink();
  const w = new StreamWriter(sink, { compressed: true, chunkSize: CHUNK });
  await w.meta(exampleMeta({ dataSize: 0, incremental: true, compressed: 2 }));
  await w.finish();
  assert.ok(sink.bytes().toString("latin1").endsWith("stop 0000000000000000 0000000000000000\r\n[]\r\ncomp 0000000000000000 0000000000000002\r\n"));
});

test("writer refuses out-of-order frames, short payloads and a wrong data size", async () => {
  const w = new StreamWriter(new MemorySink(), { compressed: false, chunkSize: CHUNK });
  await w.meta(exampleMeta());
  await w.zero(100, 10);
  await assert.rejects(w.zero(50, 10), /precedes/);
  await w.beginData(200, 16);
  await w.payload(first.subarray(0, 8));
  await assert.rejects(w.endData(), /got 8 of 16/);

  const w2 = new StreamWriter(new MemorySink(), { compressed: false, chunkSize: CHUNK });
  await w2.meta(exampleMeta());
  await w2.beginData(0, 16);
  await w2.payload(first);
  await w2.endData();
  await assert.rejects(w2.finish(), /announced 32/);
});

test("large payloads pass straight through and keep order with staged headers", async () => {
  const big = Buffer.alloc(3 * 1024 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
  const sink = new MemorySink();
  const w = new StreamWriter(sink, { compressed: false, chunkSize: CHUNK, stagingSize: 4096 });
  await w.meta(exampleMeta({ virtualSize: big.length + 4096, dataSize: big.length }));
  await w.beginData(0, big.length);
  await w.payload(big.subarray(0, 1 << 20));
  await w.payload(big.subarray(1 << 20));
  await w.endData();
  await w.zero(big.length, 4096);
  const s = await w.finish();
  const bytes = sink.bytes();
  assert.equal(s.adler32, new Adler32().update(bytes).value);
  const dataHeader = bytes.indexOf("data 0000");
  assert.deepEqual(bytes.subarray(dataHeader + 40, dataHeader + 40 + big.length), big);
});

/** A sink that sums what it takes (as the direct-I/O file does), optionally failing after `failAfter` writes. */
class SummingSink extends MemorySink {
  writes = 0;
  summed = 0;
  constructor(private readonly failAfter = Infinity) {
    super();
  }
  async writeSummed(chunk: Uint8Array): Promise<number> {
    if (++this.writes > this.failAfter) throw Object.assign(new Error("ENOSPC: simulated"), { code: "ENOSPC" });
    await this.write(chunk);
    this.summed++;
    return new Adler32().update(chunk).value;
  }
}

test("a sink that sums what it copies gives the writer its Adler-32s; a failing one fails the stream without stray rejections", async () => {
  const big = Buffer.alloc(3 * 1024 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = (i * 13) & 0xff;
  const write = async (sink: MemorySink) => {
    const w = new StreamWriter(sink, { compressed: false, chunkSize: CHUNK, stagingSize: 4096 });
    await w.meta(exampleMeta({ virtualSize: big.length + 4096, dataSize: big.length }));
    await w.beginData(0, big.length);
    for (let at = 0; at < big.length; at += 512 * 1024) await w.payloadNoWait(big.subarray(at, at + 512 * 1024));
    await w.endData();
    await w.zero(big.length, 4096);
    return w.finish();
  };
  const plain = new MemorySink();
  const summing = new SummingSink();
  const a = await write(plain);
  const b = await write(summing);
  assert.ok(summing.summed >= 6, "large payloads were summed by the sink");
  assert.deepEqual(summing.bytes(), plain.bytes());
  assert.equal(b.adler32, a.adler32);
  assert.equal(b.adler32, new Adler32().update(plain.bytes()).value);

  const stray: unknown[] = [];
  const onStray = (e: unknown) => stray.push(e);
  process.on("unhandledRejection", onStray);
  try {
    for (const failAfter of [0, 1, 3, 6]) {
      await assert.rejects(write(new SummingSink(failAfter)), /ENOSPC/, `failing after ${failAfter} writes`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  } finally {
    process.off("unhandledRejection", onStray);
  }
  assert.deepEqual(stray.map(String), []);
});
