import { test } from "node:test";
import assert from "node:assert/strict";
import { BufferPool, BufferRecycler, sizeClass } from "../../src/util/buffer-pool.js";

const KiB = 1024;
const settledSoon = async (p: Promise<unknown>): Promise<boolean> => {
  let done = false;
  void p.then(() => (done = true));
  await new Promise((r) => setImmediate(r));
  return done;
};

test("fixed pool: count buffers of exactly the size, reused; acquire waits, release serves the first waiter", async () => {
  const pool = BufferPool.fixed(100 * KiB + 3, 2);
  assert.equal(pool.bufferSize, 100 * KiB + 3);
  const a = await pool.acquire();
  const b = await pool.acquire();
  assert.equal(a.length, 100 * KiB + 3);
  assert.equal(pool.bytesInUse, 2 * (100 * KiB + 3));
  const first = pool.acquire();
  const second = pool.acquire();
  assert.equal(await settledSoon(first), false, "a third buffer waits");
  pool.release(b);
  assert.equal(await first, b);
  assert.equal(await settledSoon(second), false);
  pool.release(a);
  assert.equal(await second, a);
  pool.release(a);
  pool.release(b);
  assert.equal(pool.bytesInUse, 0);
  await assert.rejects(pool.acquire(100 * KiB + 4), RangeError);
  assert.throws(() => BufferPool.fixed(0, 1), RangeError);
});

test("budget pool: size classes under the budget; idle buffers of other sizes make room", async () => {
  const pool = BufferPool.budget(256 * KiB);
  assert.equal(pool.bufferSize, 256 * KiB);
  const a = await pool.acquire(100 * KiB);
  assert.equal(a.length, 128 * KiB);
  const b = await pool.acquire(1);
  assert.equal(b.length, 64 * KiB);
  const c = pool.acquire(128 * KiB); // 128 + 64 + 128 > 256
  assert.equal(await settledSoon(c), false);
  pool.release(b); // the idle 64 KiB buffer is dropped to make room
  const fresh = await c;
  assert.ok(fresh !== a && fresh !== b && fresh.length === 128 * KiB);
  assert.equal(pool.bytesInUse, 256 * KiB);
  const d = pool.acquire(128 * KiB);
  assert.equal(await settledSoon(d), false);
  pool.release(a);
  assert.equal(await d, a, "the released buffer of its class");
  pool.release(a);
  pool.release(fresh);
  // 256 KiB needs both idle buffers dropped.
  const big = await pool.acquire(200 * KiB);
  assert.equal(big.length, 256 * KiB);
  assert.equal(pool.bytesInUse, 256 * KiB);
  pool.release(big);
  await assert.rejects(pool.acquire(257 * KiB), RangeError);
});

test("recycler: never waits, keeps a few idle buffers per class", () => {
  assert.equal(sizeClass(1), 64 * KiB);
  assert.equal(sizeClass(64 * KiB + 1), 128 * KiB);
  const r = new BufferRecycler(1);
  const a = r.acquire(10);
  const b = r.acquire(10);
  assert.notEqual(a, b);
  r.release(a);
  r.release(b); // over perClass: dropped
  assert.equal(r.acquire(64 * KiB), a);
  assert.notEqual(r.acquire(64 * KiB), b);
  r.release(Buffer.alloc(100 * KiB)); // not a class size: ignored
  assert.equal(r.acquire(100 * KiB).length, 128 * KiB);
});
