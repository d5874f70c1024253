import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Lz4FrameEncoder } from "../../src/format/lz4.js";
import type { StreamWriter } from "../../src/format/writer.js";
import { LANE_PART, Lz4Lanes } from "../../src/pipeline/lz4-lanes.js";

/** Collects writer calls in order: payload bytes per lz4 frame, and the other calls by name. */
function fakeWriter(failAt = -1) {
  const calls: string[] = [];
  const frames: Buffer[] = [];
  let current: Buffer[] = [];
  let payloads = 0;
  const writer = {
    async beginData(start: number) {
      calls.push(`begin ${start}`);
    },
    async endData() {
      calls.push("end");
    },
    async zero(start: number) {
      calls.push(`zero ${start}`);
    },
    async payload(chunk: Uint8Array, frameEnd = true) {
      await new Promise((r) => setImmediate(r)); // writes take a while
      if (payloads++ === failAt) throw new Error("disk full");
      current.push(Buffer.from(chunk)); // the caller reuses its buffer afterwards
      if (frameEnd) {
        frames.push(Buffer.concat(current));
        calls.push(`frame ${frames.length - 1}`);
        current = [];
      }
    },
  };
  return { writer: writer as unknown as StreamWriter, calls, frames };
}

async function reference(pieces: Buffer[][]): Promise<Buffer> {
  const enc = new Lz4FrameEncoder();
  const out: Buffer[] = [];
  const dst = Buffer.alloc(enc.bound(LANE_PART) + 64);
  const size = pieces.flat().reduce((n, p) => n + p.length, 0);
  out.push(Buffer.from(dst.subarray(0, enc.begin(dst, size, 2))));
  for (const input of pieces.flat()) {
    for (let at = 0; at < input.length; at += LANE_PART) {
      const n = await enc.update(input.subarray(at, at + LANE_PART), dst);
      out.push(Buffer.from(dst.subarray(0, n)));
    }
  }
  out.push(Buffer.from(dst.subarray(0, await enc.end(dst))));
  return Buffer.concat(out);
}

test("lz4 lanes: frames compressed at once reach the writer in order, identical to one encoder", async () => {
  const text = Buffer.from("lanes keep the order of frames, and the bytes of every frame\n".repeat(80_000));
  // Frames of 1..3 inputs; random and text; sizes not multiples of the part size.
  const frames: Buffer[][] = [];
  for (let i = 0; i < 12; i++) {
    const inputs: Buffer[] = [];
    for (let j = 0; j <= i % 3; j++) inputs.push(i % 2 ? randomBytes(LANE_PART * 2 + 4096 * i) : text.subarray(i * 1000, i * 1000 + LANE_PART * 3 + 17 * i));
    frames.push(inputs);
  }
  const { writer, calls, frames: written } = fakeWriter();
  const lanes = new Lz4Lanes({ writer, level: 2, lanes: 3, buffersPerLane: 2 });
  let released = 0;
  lanes.inOrder(() => writer.zero(0, 0));
  for (const [i, inputs] of frames.entries()) {
    lanes.inOrder(() => writer.beginData(i, 0));
    lanes.beginFrame(inputs.reduce((n, b) => n + b.length, 0));
    for (const input of inputs) lanes.update(input, () => released++);
    lanes.endFrame();
    lanes.inOrder(() => writer.endData());
  }
  await lanes.flush();
  assert.equal(released, frames.reduce((n, f) => n + f.length, 0), "every input released");
  assert.deepEqual(calls, ["zero 0", ...frames.flatMap((_, i) => [`begin ${i}`, `frame ${i}`, "end"])]);
  for (const [i, inputs] of frames.entries()) assert.ok(written[i]!.equals(await reference([inputs])), `frame ${i} identical`);
});

test("lz4 lanes: a failed write at any point fails flush, releases every input and leaves nothing running", async () => {
  for (const failAt of [0, 1, 3, 7, 12, 20]) {
    const { writer } = fakeWriter(failAt);
    const lanes = new Lz4Lanes({ writer, level: 2, lanes: 2, buffersPerLane: 2 });
    let released = 0;
    let inputs = 0;
    let error: Error | null = null;
    try {
      for (let i = 0; i < 6; i++) {
        lanes.inOrder(() => writer.beginData(i, 0));
        lanes.beginFrame(LANE_PART * 4);
        for (let j = 0; j < 4; j++) {
          inputs++;
          lanes.update(randomBytes(LANE_PART), () => released++);
        }
        lanes.endFrame();
        lanes.inOrder(() => writer.endData());
        await new Promise((r) => setImmediate(r)); // let some work happen between frames
      }
      await lanes.flush();
    } catch (e) {
      error = e as Error;
    }
    assert.match(error?.message ?? "no error", /disk full/, `failAt ${failAt}`);
    await lanes.stop();
    assert.equal(released, inputs, `failAt ${failAt}: every input released`);
  }
});
