import { test } from "node:test";
import assert from "node:assert/strict";
import { optionConflict } from "../../src/backup/option-checks.js";
import type { BackupArgs } from "../../src/backup/options.js";

type Checked = Parameters<typeof optionConflict>[0];

const DIR: Checked = { output: "/backups/vm1", type: "stream", raw: false, level: "full", compress: false };
const LEVELS: BackupArgs["level"][] = ["copy", "full", "inc", "diff", "auto"];

const COMPRESS = "Compression not supported with raw output.";
const RAW_TO_STDOUT = "Output type raw not supported to stdout.";
const RAW_IMAGES_TO_STDOUT = "Saving raw images to stdout is not supported.";
const RAW_INC = "Stream format raw does not support incremental or differential backup.";

test("compression with -t raw is refused, for every level and every -z value (also -z 0)", () => {
  for (const level of LEVELS) {
    for (const compress of [0, 2, 9]) {
      assert.equal(optionConflict({ ...DIR, type: "raw", level, compress }), COMPRESS, `${level} -z ${compress}`);
    }
  }
});

test("-t raw to stdout is refused", () => {
  for (const level of LEVELS) {
    assert.equal(optionConflict({ ...DIR, output: "-", type: "raw", level }), RAW_TO_STDOUT, level);
  }
});

test("--raw to stdout is refused", () => {
  for (const level of LEVELS) {
    assert.equal(optionConflict({ ...DIR, output: "-", raw: true, level }), RAW_IMAGES_TO_STDOUT, level);
    assert.equal(optionConflict({ ...DIR, output: "-", raw: true, level, compress: 2 }), RAW_IMAGES_TO_STDOUT, `${level} -z`);
  }
});

test("-t raw with inc or diff is refused", () => {
  for (const level of ["inc", "diff"] as const) {
    assert.equal(optionConflict({ ...DIR, type: "raw", level }), RAW_INC, level);
    assert.equal(optionConflict({ ...DIR, type: "raw", raw: true, level }), RAW_INC, `${level} --raw`);
  }
});

test("several conflicts: the first in the original's order is reported", () => {
  assert.equal(optionConflict({ output: "-", type: "raw", raw: true, level: "inc", compress: 2 }), COMPRESS);
  assert.equal(optionConflict({ output: "-", type: "raw", raw: true, level: "inc", compress: false }), RAW_TO_STDOUT);
  assert.equal(optionConflict({ output: "-", type: "stream", raw: true, level: "inc", compress: false }), RAW_IMAGES_TO_STDOUT);
  assert.equal(optionConflict({ output: "/b", type: "raw", raw: true, level: "diff", compress: false }), RAW_INC);
});

test("allowed combinations return null", () => {
  for (const level of LEVELS) {
    for (const compress of [false, 0, 2] as const) {
      assert.equal(optionConflict({ ...DIR, level, compress }), null, `stream to a dir, ${level}, -z ${compress}`);
      assert.equal(optionConflict({ ...DIR, level, compress, raw: true }), null, `--raw to a dir, ${level}`);
      assert.equal(optionConflict({ ...DIR, level, compress, output: "-" }), null, `stream to stdout, ${level}`);
    }
  }
  for (const level of ["copy", "full", "auto"] as const) {
    assert.equal(optionConflict({ ...DIR, type: "raw", level }), null, `-t raw ${level}`);
    assert.equal(optionConflict({ ...DIR, type: "raw", raw: true, level }), null, `-t raw --raw ${level}`);
  }
});

test("only exactly `-` is stdout", () => {
  for (const output of ["./-", "-/", "--", "/tmp/-"]) {
    assert.equal(optionConflict({ ...DIR, output, type: "raw" }), null, output);
    assert.equal(optionConflict({ ...DIR, output, raw: true }), null, output);
  }
});

test("--chain takes a name of letters, digits, _ and -, not only digits; --check needs a directory", () => {
  const DIR = { output: "/b", type: "stream" as const, raw: false, level: "auto" as const, compress: false as const };
  assert.equal(optionConflict({ ...DIR, chain: "offsite-1" }), null);
  for (const bad of ["a.b", "a/b", "12", " x", "x".repeat(65)]) assert.match(optionConflict({ ...DIR, chain: bad }) ?? "", /^Invalid chain name/, bad);
  assert.match(optionConflict({ ...DIR, output: "-", check: true }) ?? "", /--check needs a target directory/);
});
