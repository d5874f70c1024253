// The copy-on-write overlay (src/nbd/cow-backend.ts) against a model: a buffer that takes every
// write, while the backend below never changes; random writes (partial blocks, across blocks,
// concurrent), zeroes, trims, block status, and the overlay file gone from the directory.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { CowBackend } from "../../src/nbd/cow-backend.js";
import type { NbdBackend } from "../../src/nbd/backend.js";
import { tempDir } from "../helpers/tmp.js";

const SIZE = 256 * 1024 + 1000; // not a multiple of the block size

/** A read-only base with known bytes, block status: first half data, second half a hole. */
function base(): NbdBackend & { bytes: Buffer } {
  const bytes = Buffer.alloc(SIZE);
  for (let i = 0; i < SIZE / 2; i++) bytes[i] = (i * 7 + 3) & 0xff;
  return {
    bytes,
    size: SIZE,
    readOnly: true,
    read: (offset, length, into) => void bytes.copy(into, 0, offset, offset + length),
    blockStatus: (offset, length) => {
      const half = Math.floor(SIZE / 2);
      if (offset < half) return [{ length: Math.min(length, half - offset), flags: 0 }];
      return [{ length, flags: 3 }];
    },
  };
}

function rng(seed: number): () => number {
  let x = seed;
  return () => {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    return x / 0x80000000;
  };
}

test("random writes, zeroes and trims read back like a model; the backend is untouched", async (t) => {
  const dir = await tempDir(t);
  const b = base();
  const original = Buffer.from(b.bytes);
  const cow = await CowBackend.create(b, { dir, blockBytes: 4096 });
  t.after(() => cow.close());
  assert.deepEqual(await readdir(dir), [], "the overlay file is unlinked at once");
  const model = Buffer.from(b.bytes);
  const random = rng(42);
  const ops: Promise<void>[] = [];
  for (let i = 0; i < 300; i++) {
    const offset = Math.floor(random() * (SIZE - 1));
    const length = 1 + Math.floor(random() * Math.min(20000, SIZE - offset - 1));
    const kind = random();
    if (kind < 0.7) {
      const data = Buffer.alloc(length, i & 0xff);
      data.copy(model, offset);
      ops.push(cow.write(offset, data)); // concurrent: the overlay serializes them in order
    } else if (kind < 0.85) {
      model.fill(0, offset, offset + length);
      ops.push(cow.writeZeroes(offset, length));
    } else {
      model.fill(0, offset, offset + length);
      ops.push(cow.trim(offset, length));
    }
  }
  await Promise.all(ops);
  const got = Buffer.alloc(SIZE);
  await cow.read(0, SIZE, got);
  assert.ok(got.equals(model), "whole export equals the model");
  for (let i = 0; i < 200; i++) {
    const offset = Math.floor(random() * (SIZE - 1));
    const length = 1 + Math.floor(random() * Math.min(9000, SIZE - offset - 1));
    const part = Buffer.alloc(length);
    await cow.read(offset, length, part);
    assert.ok(part.equals(model.subarray(offset, offset + length)), `read ${offset}+${length}`);
  }
  assert.ok(b.bytes.equals(original), "the backend below never changes");
  await cow.trim(0, SIZE);
  assert.deepEqual(await cow.blockStatus!(0, SIZE), [{ length: SIZE, flags: 3 }], "a whole-device discard marks every block zero");
  const after = Buffer.alloc(SIZE, 0xff);
  await cow.read(0, SIZE, after);
  assert.ok(after.equals(Buffer.alloc(SIZE)), "and it reads as zeroes");
});

test("untouched ranges read straight from the backend (synchronously when it answers so); block status", async (t) => {
  const dir = await tempDir(t);
  const cow = await CowBackend.create(base(), { dir, blockBytes: 4096 });
  t.after(() => cow.close());
  const into = Buffer.alloc(4096);
  assert.equal(cow.read(0, 4096, into), undefined, "no promise for an untouched range over a synchronous backend");
  assert.deepEqual(await cow.blockStatus!(SIZE - 8192, 8192), [{ length: 8192, flags: 3 }]);
  await cow.write(SIZE - 6000, Buffer.alloc(10, 1));
  const wb = Math.floor((SIZE - 6000) / 4096) * 4096;
  assert.deepEqual(await cow.blockStatus!(wb, 4096), [{ length: 4096, flags: 0 }], "a written block is data");
  assert.deepEqual(await cow.blockStatus!(wb - 4096, 4096), [{ length: 4096, flags: 3 }], "the block before it is still the backend's hole");
  assert.deepEqual(await cow.blockStatus!(wb - 4096, 8192), [{ length: 4096, flags: 3 }], "one run per reply");
  const tail = Buffer.alloc(10);
  await cow.read(SIZE - 6000, 10, tail);
  assert.ok(tail.equals(Buffer.alloc(10, 1)));
  const around = Buffer.alloc(4096);
  await cow.read(Math.floor((SIZE - 6000) / 4096) * 4096, 4096, around);
  assert.equal(around.filter((x) => x === 1).length, 10, "the rest of the written block kept the backend's bytes (zeroes there)");
});
