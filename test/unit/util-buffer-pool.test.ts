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

test("budget pool: a smaller request takes an idle larger buffer; alternating sizes allocate nothing new", async () => {
  const pool = BufferPool.budget(16 * 64 * KiB);
  // Warm: the budget's worth of 4-class buffers (256 KiB), all idle again.
  const warm = await Promise.all(Array.from({ length: 4 }, () => pool.acquire(256 * KiB)));
  for (const b of warm) pool.release(b);
  assert.equal(pool.allocated, 4);
  const small = await pool.acquire(64 * KiB);
  assert.ok(warm.includes(small), "an idle 256 KiB buffer serves a 64 KiB request");
  assert.equal(small.length, 256 * KiB);
  assert.equal(pool.bytesInUse, 256 * KiB);
  pool.release(small);
  // Reads of a backup: mostly full-size, extents' tails smaller, several in flight.
  for (let round = 0; round < 50; round++) {
    const held = await Promise.all([pool.acquire(256 * KiB), pool.acquire(64 * KiB + 1), pool.acquire(1), pool.acquire(200 * KiB)]);
    for (const b of held) pool.release(b);
  }
  assert.equal(pool.allocated, 4, "no fresh buffer: the idle ones were reused");
  assert.equal(pool.dropped, 0);
  assert.equal(pool.bytesInUse, 0);
});

test("budget pool: first come, first served: a request behind a waiting one waits too, even when it would fit", async () => {
  const pool = BufferPool.budget(256 * KiB);
  const a = await pool.acquire(64 * KiB);
  const b = await pool.acquire(64 * KiB);
  const big = pool.acquire(256 * KiB); // needs everything
  assert.equal(await settledSoon(big), false);
  const small = pool.acquire(64 * KiB); // 128 KiB are free, but the big one came first
  assert.equal(pool.tryAcquire(64 * KiB), null, "tryAcquire does not jump the queue either");
  assert.equal(await settledSoon(small), false);
  pool.release(a);
  pool.release(b);
  const got = await big;
  assert.equal(got.length, 256 * KiB);
  assert.equal(await settledSoon(small), false);
  pool.release(got);
  assert.equal((await small).length, 256 * KiB, "then the next, from what the first gave back");
});

test("recycler: headroom classes: a power of two plus the header room, not twice the size", () => {
  const r = new BufferRecycler(2, 28);
  const reply = r.acquire(28 + 2048 * KiB);
  assert.equal(reply.length, 2048 * KiB + 28);
  r.release(reply);
  assert.equal(r.acquire(2048 * KiB), reply, "a plain 2 MiB request takes it too");
  r.release(reply);
  assert.equal(r.acquire(16).length, 64 * KiB + 28);
  // nextClassUp: no idle buffer of its class: an idle one of the next class up, not a new one.
  assert.notEqual(r.acquire(28 + 1024 * KiB), reply, "not by default");
  const up = new BufferRecycler(2, 28, true);
  const two = up.acquire(2048 * KiB);
  up.release(two);
  assert.equal(up.acquire(28 + 1024 * KiB), two);
  up.release(two);
  assert.notEqual(up.acquire(28 + 512 * KiB), two, "two classes up: too large to lend");
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

test("pool: setBudget grows and shrinks a size-class pool, dropping idle buffers beyond it", async () => {
  const MiB = 1024 * KiB;
  const pool = BufferPool.budget(8 * MiB);
  const held = await Promise.all(Array.from({ length: 8 }, () => pool.acquire(MiB)));
  assert.equal(pool.tryAcquire(MiB), null, "8 MiB in use: full");
  pool.setBudget(12 * MiB);
  assert.equal(pool.budget, 12 * MiB);
  assert.equal(pool.bufferSize, 8 * MiB, "the largest class within the budget");
  const more = Array.from({ length: 4 }, () => pool.tryAcquire(MiB));
  assert.ok(more.every((b) => b !== null), "the larger budget has room at once");
  assert.equal(pool.tryAcquire(MiB), null);
  for (const b of [...held, ...more]) pool.release(b!);
  pool.setBudget(4 * MiB);
  const allocated = pool.allocated;
  const again = Array.from({ length: 4 }, () => pool.tryAcquire(MiB));
  assert.ok(again.every((b) => b !== null));
  assert.equal(pool.allocated, allocated, "the 4 idle buffers left are reused");
  assert.equal(pool.dropped, 8, "the 8 over the smaller budget were dropped");
  assert.equal(pool.tryAcquire(MiB), null, "4 MiB: full");
  // Shrinking below what is in use: nothing new until enough comes back.
  pool.setBudget(2 * MiB);
  pool.release(again[0]!);
  pool.release(again[1]!);
  assert.equal(pool.tryAcquire(MiB), null, "4 MiB were in use, 2 still are");
  pool.release(again[2]!);
  assert.notEqual(pool.tryAcquire(MiB), null);
});

test("pool: setBudget is refused for fixed pools, too small budgets and while acquires wait", async () => {
  assert.throws(() => BufferPool.fixed(KiB * 64, 2).setBudget(1 << 20), /fixed/);
  const pool = BufferPool.budget(128 * KiB);
  assert.throws(() => pool.setBudget(1000), RangeError);
  const a = await pool.acquire(128 * KiB);
  const waiting = pool.acquire(128 * KiB);
  assert.throws(() => pool.setBudget(1 << 20), /wait/);
  pool.release(a);
  assert.equal(await waiting, a);
});
