import { test } from "node:test";
import assert from "node:assert/strict";
import { readBudget } from "../../src/backup/disk-workers.js";

test("read budget: a remote run (NBD over TCP) keeps more reads in flight than a local one", () => {
  assert.equal(readBudget(false), 8 << 20, "local runs keep their 8 MiB (peak RSS)");
  // 20 ms round trip at ~1 GiB/s: ~20 MiB on the way, plus what is being written.
  assert.ok(readBudget(true) >= 24 << 20, `remote budget ${readBudget(true)}`);
  assert.ok(readBudget(true) <= 32 << 20, "and bounded: a remote run's peak RSS stays under 128 MiB");
});
