import { test } from "node:test";
import assert from "node:assert/strict";
import { linkReadBudget, MAX_READ_BUDGET, READ_BUDGET } from "../../src/backup/read-budget.js";

const MiB = 1 << 20;

test("read budget: a link's reads in flight follow its round trip, within bounds", () => {
  assert.equal(READ_BUDGET, 8 * MiB, "local runs keep their 8 MiB (peak RSS)");
  assert.equal(linkReadBudget(0), READ_BUDGET, "no delay: what the copy holds");
  assert.equal(linkReadBudget(0.2), 9 * MiB, "a LAN: ~the local budget");
  assert.equal(linkReadBudget(5), 14 * MiB, "5 ms: 1 GiB/s × 5 ms ≈ 5.1 MiB on the way, rounded up to whole MiB");
  // 20 ms round trip at ~1 GiB/s: ~20 MiB on the way, plus what is being copied on.
  assert.equal(linkReadBudget(20), 28 * MiB);
  assert.equal(linkReadBudget(200), MAX_READ_BUDGET, "bounded: a remote run's peak RSS stays under 128 MiB");
  assert.ok(MAX_READ_BUDGET <= 32 * MiB);
  assert.equal(linkReadBudget(null), MAX_READ_BUDGET, "not measured: the most");
  assert.equal(linkReadBudget(Number.NaN), MAX_READ_BUDGET);
  assert.equal(linkReadBudget(-1), READ_BUDGET);
});
