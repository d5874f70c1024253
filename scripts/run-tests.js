#!/usr/bin/env node
// Test entry point: `all` (typecheck, build, unit, integration), `unit` (quick subset),
// `integration`. Files named *.slow.test.ts are the slow ones; `--skip-slow` leaves them out.
// Extra arguments that name test files run only those.
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const [mode = "all", ...rest] = process.argv.slice(2);
const skipSlow = rest.includes("--skip-slow");
const only = rest.filter((a) => !a.startsWith("--"));

function run(cmd, args, env = {}) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: "inherit", env: { ...process.env, ...env } });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

function testFiles(dir) {
  const out = [];
  const walk = (d) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith(".test.ts") && !(skipSlow && name.endsWith(".slow.test.ts"))) out.push(relative(root, p));
    }
  };
  walk(join(root, dir));
  return out;
}

function runTests(files, concurrency) {
  if (files.length === 0) return;
  // A hung peer must fail its test, not stall CI: 5 minutes per test at most.
  run(process.execPath, ["--import", "tsx", "--test", `--test-concurrency=${concurrency}`, "--test-timeout=300000", ...files]);
}

if (!["all", "unit", "integration"].includes(mode)) {
  console.error(`usage: run-tests.js all|unit|integration [--skip-slow] [files...]`);
  process.exit(2);
}
if (mode === "all" || mode === "integration") {
  run("npm", ["run", "--silent", "typecheck"]);
  run("npm", ["run", "--silent", "build"]);
}
if (only.length > 0) {
  runTests(only, 1);
} else {
  if (mode !== "integration") runTests(testFiles("test/unit"), 2);
  // Integration tests share one libvirtd and two cores: one file at a time.
  if (mode !== "unit") runTests(testFiles("test/integration"), 1);
}
