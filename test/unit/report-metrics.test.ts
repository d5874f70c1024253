import { test } from "node:test";
import assert from "node:assert/strict";
import { formatMetrics, previousSuccess } from "../../src/report/metrics.js";
import { checkExposition } from "../helpers/metrics.js";

test("metrics: five gauges labelled by domain and level, valid exposition format; quotes in names escaped", () => {
  const text = formatMetrics({ domain: 'web "1"', level: "auto", started: 1764892800, durationSeconds: 12.5, bytes: 4096, exitCode: 0, lastSuccess: 1764892800 });
  const samples = checkExposition(text);
  assert.deepEqual([...samples.keys()], [
    "virtnbdbackup_last_run_timestamp_seconds",
    "virtnbdbackup_last_success_timestamp_seconds",
    "virtnbdbackup_last_run_duration_seconds",
    "virtnbdbackup_last_run_bytes",
    "virtnbdbackup_last_run_exit_code",
  ]);
  assert.equal(samples.get("virtnbdbackup_last_run_duration_seconds"), 12.5);
  assert.match(text, /virtnbdbackup_last_run_bytes\{domain="web \\"1\\"",level="auto"\} 4096/);
  assert.equal(previousSuccess(text), 1764892800);
  assert.equal(previousSuccess(""), 0);
});
