import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { parseBackupArgs } from "../../src/cli/args.js";
import { LogManager } from "../../src/report/log.js";
import { runCommand } from "../../src/cli/command.js";
import { exitCodeFromCounts } from "../../src/report/exit-code.js";
import { packageVersion, versionLine } from "../../src/report/version.js";

const PACKAGE_VERSION = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;

function io() {
  const out: string[] = [];
  const err: string[] = [];
  const manager = new LogManager();
  return {
    out,
    err,
    manager,
    io: { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) }, manager },
  };
}

test("exit code from counters: errors → 1, --strict warnings → 2", () => {
  assert.equal(exitCodeFromCounts({ warnings: 0, errors: 0 }), 0);
  assert.equal(exitCodeFromCounts({ warnings: 3, errors: 0 }), 0);
  assert.equal(exitCodeFromCounts({ warnings: 3, errors: 0 }, true), 2);
  assert.equal(exitCodeFromCounts({ warnings: 3, errors: 1 }, true), 1);
  assert.equal(exitCodeFromCounts({ warnings: 0, errors: 1 }), 1);
});

test("versionLine joins argv like upstream's sys.argv", () => {
  assert.equal(
    versionLine(["-d", "vm", "-l", "inc", "-o", "/b"], "/usr/bin/virtnbdbackup"),
    `Version: 2.47 (virtnbdbackup-ts ${PACKAGE_VERSION}) Arguments: /usr/bin/virtnbdbackup -d vm -l inc -o /b`,
  );
});

test("packageVersion: the nearest package.json named virtnbdbackup-ts above a directory", () => {
  assert.equal(packageVersion(new URL("../../src/report", import.meta.url).pathname), PACKAGE_VERSION);
  assert.equal(packageVersion(new URL("../../dist/bin", import.meta.url).pathname), PACKAGE_VERSION);
  assert.equal(packageVersion("/"), "unknown");
});

test("runCommand: usage errors print usage and return 2", async () => {
  const t = io();
  const code = await runCommand((argv) => (parseBackupArgs(argv), 0), ["-l", "x"], t.io);
  assert.equal(code, 2);
  assert.equal(t.out.length, 0);
  assert.match(t.err.join(""), /^usage: virtnbdbackup .*\nvirtnbdbackup: error: argument -l\/--level: invalid choice: 'x'/s);
});

test("runCommand: --version prints to stdout and returns 0", async () => {
  const t = io();
  const code = await runCommand((argv) => (parseBackupArgs(argv), 1), ["-V"], t.io);
  assert.equal(code, 0);
  assert.deepEqual(t.out, [`2.47 (virtnbdbackup-ts ${PACKAGE_VERSION})\n`]);
});

test("runCommand: main's status is returned, unexpected errors give 1 and are logged", async () => {
  const t = io();
  assert.equal(await runCommand(async () => 2, [], t.io), 2);
  const lines: string[] = [];
  t.manager.configure({ prog: "virtnbdbackup", stderr: { write: (s: string) => lines.push(s) }, nocolor: true });
  const code = await runCommand(
    async () => {
      throw new Error("kaputt");
    },
    [],
    t.io,
  );
  assert.equal(code, 1);
  assert.match(lines.join(""), /ERROR root virtnbdbackup - main \[main\]: Unexpected error: Error: kaputt/);
  assert.equal(t.manager.counts.errors, 1);
});
