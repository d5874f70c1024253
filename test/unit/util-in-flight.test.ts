import { test } from "node:test";
import assert from "node:assert/strict";
import { awaitLater, InFlight } from "../../src/util/in-flight.js";

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (e: Error) => void } {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}
const settledSoon = async (p: Promise<unknown>): Promise<boolean> => {
  let done = false;
  void p.then(
    () => (done = true),
    () => (done = true),
  );
  await new Promise((r) => setImmediate(r));
  return done;
};

test("add waits while max operations run; drain waits for all", async () => {
  const w = new InFlight(2);
  const a = deferred();
  const b = deferred();
  await w.add(a.promise);
  const adding = w.add(b.promise);
  assert.equal(await settledSoon(adding), false, "full: add waits");
  a.resolve();
  await adding;
  const draining = w.drain();
  assert.equal(await settledSoon(draining), false);
  b.resolve();
  await draining;
  assert.equal(w.failed, false);
});

test("the first failure is kept, rethrown by add and drain, not by settle; never unhandled", async () => {
  const w = new InFlight(2);
  const a = deferred();
  const b = deferred();
  const c = deferred();
  await w.add(a.promise);
  const adding = w.add(b.promise);
  a.reject(new Error("first"));
  await assert.rejects(adding, /first/);
  assert.equal(w.failed, true);
  w.track(c.promise);
  b.reject(new Error("second"));
  const settling = w.settle();
  assert.equal(await settledSoon(settling), false, "settle waits for the rest");
  c.resolve();
  await settling;
  assert.equal((w.failure as Error).message, "first");
  const u = new InFlight();
  const d = deferred();
  u.track(d.promise);
  d.reject(new Error("late"));
  await assert.rejects(u.drain(), /late/);
  assert.equal((u.failure as Error).message, "late");
});

test("awaitLater: a failure while other awaits run is no unhandled rejection, and reaches the later await", async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  process.on("unhandledRejection", onUnhandled);
  try {
    const failing = awaitLater(Promise.reject(new Error("libvirt said no")));
    const fine = awaitLater(Promise.resolve(7));
    await new Promise((r) => setTimeout(r, 20)); // other awaits first
    assert.equal(await fine, 7);
    await assert.rejects(failing, /libvirt said no/);
    assert.deepEqual(unhandled, []);
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
});
