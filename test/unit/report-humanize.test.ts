import { test } from "node:test";
import assert from "node:assert/strict";
import { formatDuration, humanize, pyFixed, pyRepr, pyStr } from "../../src/report/humanize.js";

test("humanize: docs/cli.md examples", () => {
  assert.equal(humanize(0), "0.0B");
  assert.equal(humanize(500), "500.0B");
  assert.equal(humanize(65536), "64.0KiB");
  assert.equal(humanize(131072), "128.0KiB");
  assert.equal(humanize(1048576), "1.0MiB");
  assert.equal(humanize(6 * 1048576), "6.0MiB");
});

test("humanize: unit boundaries, big values and Yi (values checked with Python)", () => {
  assert.equal(humanize(1023), "1023.0B");
  assert.equal(humanize(1024), "1.0KiB");
  assert.equal(humanize(1076), "1.1KiB");
  assert.equal(humanize(3.5 * 1024 ** 3), "3.5GiB");
  assert.equal(humanize(2 ** 70), "1.0ZiB");
  assert.equal(humanize(1536 * 1024 ** 8), "1536.0YiB");
  assert.equal(humanize(1e30), "827180.6YiB");
  assert.equal(humanize(-1), "-1.0B");
});

test("humanize: ties round to even like Python's format(), not up like toFixed", () => {
  // 1280 / 1024 = 1.25 exactly: Python prints 1.2, (1.25).toFixed(1) is "1.3"
  assert.equal(humanize(1280), "1.2KiB");
  assert.equal(humanize(1024 + 384), "1.4KiB"); // 1.375 → not a tie at one decimal
  assert.equal(pyFixed(0.25, 1), "0.2");
  assert.equal(pyFixed(0.35, 1), "0.3"); // 0.35 is stored as 0.34999…
  assert.equal(pyFixed(2.675, 1), "2.7");
  assert.equal(pyFixed(0.05, 1), "0.1");
  assert.equal(pyFixed(9.96, 1), "10.0");
  assert.equal(pyFixed(1e22, 1), "10000000000000000000000.0");
  assert.equal(pyFixed(-0, 1), "-0.0");
});

test("pyRepr follows CPython's quoting and escapes", () => {
  assert.equal(pyRepr("foo"), "'foo'");
  assert.equal(pyRepr("a'b"), `"a'b"`);
  assert.equal(pyRepr('a"b'), `'a"b'`);
  assert.equal(pyRepr(`it's "q"`), `'it\\'s "q"'`);
  assert.equal(pyRepr("x\ty\n"), "'x\\ty\\n'");
  assert.equal(pyRepr("\u0001"), "'\\x01'");
  assert.equal(pyRepr("back\\slash"), "'back\\\\slash'");
  assert.equal(pyRepr("ä€"), "'ä€'");
  assert.equal(pyRepr(""), "''");
});

test("pyStr prints Python's str() of simple values", () => {
  assert.equal(pyStr(false), "False");
  assert.equal(pyStr(true), "True");
  assert.equal(pyStr(null), "None");
  assert.equal(pyStr(undefined), "None");
  assert.equal(pyStr(10809), "10809");
  assert.equal(pyStr("x"), "x");
  assert.equal(pyStr(["a", "b"]), "['a', 'b']");
});

test("formatDuration", () => {
  assert.equal(formatDuration(0), "00:00");
  assert.equal(formatDuration(61.9), "01:01");
  assert.equal(formatDuration(3600 + 62), "1:01:02");
  assert.equal(formatDuration(Number.POSITIVE_INFINITY), "??:??");
});
