import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { isoWeek, selectKeep, type KeepRules } from "../../src/prune/retention.js";

const NONE: KeepRules = { last: 0, hourly: 0, daily: 0, weekly: 0, monthly: 0, yearly: 0 };
/** A chain id as its local start time `YYYY-MM-DD HH:MM`. */
const at = (id: string) => {
  const [d, t = "00:00"] = id.split(" ");
  const [y, m, day] = d!.split("-").map(Number);
  const [h, min] = t.split(":").map(Number);
  return { id, time: new Date(y!, m! - 1, day!, h!, min!) };
};
const kept = (ids: string[], rules: Partial<KeepRules>): string[] => {
  const d = selectKeep(ids.map(at), { ...NONE, ...rules });
  return ids.filter((id) => d.get(id)!.keep).sort();
};
/** Days from `start` for `n` days, one chain a day at 02:00. */
const daily = (start: string, n: number): string[] => {
  const [y, m, d] = start.split("-").map(Number);
  return Array.from({ length: n }, (_, i) => {
    const t = new Date(y!, m! - 1, d! + i, 2, 0);
    return `${t.getFullYear()}-${String(t.getMonth() + 1).padStart(2, "0")}-${String(t.getDate()).padStart(2, "0")} 02:00`;
  });
};

describe("ISO weeks", () => {
  for (const [day, week] of [
    ["2026-01-01", "2026-W01"], // Thursday
    ["2027-01-01", "2026-W53"], // Friday: last week of 2026
    ["2024-12-30", "2025-W01"], // Monday of the week holding 2025-01-02
    ["2026-12-06", "2026-W49"], // Sunday ends the week
    ["2026-12-07", "2026-W50"], // Monday starts the next
  ] as const) {
    it(`${day} is ${week}`, () => assert.equal(isoWeek(at(day).time), week));
  }
});

describe("keep rules (PBS semantics over chains)", () => {
  const twoMonths = daily("2026-10-01", 61); // 2026-10-01 … 2026-11-30

  it("without a keep option every chain stays", () => {
    assert.deepEqual(kept(["2026-01-01", "2026-02-01"], {}), ["2026-01-01", "2026-02-01"]);
  });

  it("keep-last N keeps the N newest chains", () => {
    assert.deepEqual(kept(twoMonths, { last: 3 }), ["2026-11-28 02:00", "2026-11-29 02:00", "2026-11-30 02:00"]);
  });

  it("keep-daily keeps the newest chain of each of the last N days that have one", () => {
    const ids = ["2026-12-04 10:00", "2026-12-04 09:00", "2026-12-02 10:00", "2026-12-01 23:00", "2026-12-01 01:00"];
    assert.deepEqual(kept(ids, { daily: 2 }), ["2026-12-02 10:00", "2026-12-04 10:00"]);
    assert.deepEqual(kept(ids, { daily: 5 }), ["2026-12-01 23:00", "2026-12-02 10:00", "2026-12-04 10:00"]);
  });

  it("keep-hourly groups by local hour", () => {
    const ids = ["2026-12-04 10:59", "2026-12-04 10:01", "2026-12-04 09:30", "2026-12-04 07:00"];
    assert.deepEqual(kept(ids, { hourly: 2 }), ["2026-12-04 09:30", "2026-12-04 10:59"]);
  });

  it("keep-weekly uses ISO weeks (Monday to Sunday)", () => {
    // Sundays and Mondays around week changes.
    const ids = ["2026-12-07", "2026-12-06", "2026-11-30", "2026-11-29", "2026-11-23"];
    assert.deepEqual(kept(ids, { weekly: 3 }), ["2026-11-29", "2026-12-06", "2026-12-07"]);
  });

  it("keep-monthly and keep-yearly take the newest chain of each month / year", () => {
    assert.deepEqual(kept(twoMonths, { monthly: 5 }), ["2026-10-31 02:00", "2026-11-30 02:00"]);
    const years = ["2026-03-01", "2026-01-01", "2025-12-31", "2025-01-01", "2024-06-01", "2023-06-01"];
    assert.deepEqual(kept(years, { yearly: 3 }), ["2024-06-01", "2025-12-31", "2026-03-01"]);
  });

  it("a later rule only counts periods older than what earlier rules kept", () => {
    // keep-last 2 keeps both of 12-04; keep-daily 2 then skips day 12-04 (covered) and keeps 12-03 and 12-02.
    const ids = ["2026-12-04 03:00", "2026-12-04 02:00", "2026-12-04 01:00", "2026-12-03", "2026-12-02", "2026-12-01"];
    assert.deepEqual(kept(ids, { last: 2, daily: 2 }), ["2026-12-02", "2026-12-03", "2026-12-04 02:00", "2026-12-04 03:00"]);
  });

  it("a chain a rule dropped for its own period is not picked up by a later rule (PBS's remove mark)", () => {
    // keep-daily 1 keeps 12-07 10:00 and marks 12-07 09:00 for removal; keep-weekly 2 then takes
    // week 49 from 12-06, not 12-07 09:00 of the already covered week 50.
    const ids = ["2026-12-07 10:00", "2026-12-07 09:00", "2026-12-06", "2026-12-05"];
    const d = selectKeep(ids.map(at), { ...NONE, daily: 1, weekly: 2 });
    assert.deepEqual(
      ids.filter((id) => d.get(id)!.keep),
      ["2026-12-07 10:00", "2026-12-06"],
    );
    assert.match(d.get("2026-12-07 09:00")!.reason, /same day.*keep-daily 2026-12-07/);
    assert.match(d.get("2026-12-05")!.reason, /same week.*keep-weekly 2026-W49/);
    assert.equal(d.get("2026-12-06")!.reason, "keep-weekly 2026-W49");
  });

  it("a typical schedule: daily chains for two months, keep-daily 7 keep-weekly 4 keep-monthly 3", () => {
    const survivors = kept(twoMonths, { daily: 7, weekly: 4, monthly: 3 });
    assert.deepEqual(survivors, [
      // month 10: not 10-31, which keep-weekly marked (week 44 runs 10-26 … 11-01 and 11-01 holds it)
      "2026-10-25 02:00",
      "2026-11-01 02:00", // W44 (Sunday)
      "2026-11-08 02:00", // W45
      "2026-11-15 02:00", // W46
      "2026-11-22 02:00", // W47 — W48 is covered by the dailies
      ...daily("2026-11-24", 7), // the last 7 days
    ]);
  });
});
