import { test } from "node:test";
import assert from "node:assert/strict";
import { link, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { clearRunMarker, readRunMarker, writeRunMarker, type RunMarker } from "../../src/backup/run-marker.js";
import { runMarkerFileName } from "../../src/backupset/layout.js";
import { inspectTargetDir, partialFailure } from "../../src/backup/target-dir.js";
import { tempDir } from "../helpers/tmp.js";

const MARKER: RunMarker = { pid: 4242, level: "inc", checkpoint: "virtnbdbackup.3", started: "2026-11-26T04:36:38.000Z" };
const UNREADABLE: RunMarker = { pid: 0, level: "?", checkpoint: "?", started: "?" };

test("runMarkerFileName is <domain>.run.partial", () => {
  assert.equal(runMarkerFileName("vm1"), "vm1.run.partial");
  assert.equal(runMarkerFileName("my-vm.test"), "my-vm.test.run.partial");
});

test("write, read, clear: a round trip through the file runMarkerFileName names", async (t) => {
  const dir = await tempDir(t);
  assert.equal(await readRunMarker(dir, "vm1"), null, "no marker yet");
  await writeRunMarker(dir, "vm1", MARKER);
  assert.deepEqual(await readdir(dir), [runMarkerFileName("vm1")], "only the marker, no .partial of the marker left behind");
  assert.deepEqual(JSON.parse(await readFile(join(dir, runMarkerFileName("vm1")), "utf8")), MARKER);
  assert.deepEqual(await readRunMarker(dir, "vm1"), MARKER);
  assert.equal(await readRunMarker(dir, "vm2"), null, "markers are per domain");
  await clearRunMarker(dir, "vm1");
  assert.deepEqual(await readdir(dir), []);
  assert.equal(await readRunMarker(dir, "vm1"), null);
});

test("writing again replaces the marker (the checkpoint becomes known later in a run)", async (t) => {
  const dir = await tempDir(t);
  await writeRunMarker(dir, "vm1", { ...MARKER, checkpoint: "?" });
  await writeRunMarker(dir, "vm1", MARKER);
  assert.deepEqual(await readRunMarker(dir, "vm1"), MARKER);
  assert.deepEqual(await readdir(dir), ["vm1.run.partial"]);
});

test("a marker is replaced by a new file moved into place, never rewritten in place", async (t) => {
  const dir = await tempDir(t);
  await writeRunMarker(dir, "vm1", { ...MARKER, checkpoint: "?" });
  // A second name for the first marker's inode: an in-place rewrite would change it too.
  await link(join(dir, "vm1.run.partial"), join(dir, "first"));
  await writeRunMarker(dir, "vm1", MARKER);
  assert.deepEqual(await readRunMarker(dir, "vm1"), MARKER);
  assert.deepEqual(JSON.parse(await readFile(join(dir, "first"), "utf8")), { ...MARKER, checkpoint: "?" });
  assert.deepEqual((await readdir(dir)).sort(), ["first", "vm1.run.partial"]);
});

test("a stale temp file of an interrupted marker write is reused and not left behind", async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, "vm1.run.partial.partial"), "garbage from a crash, longer than the new marker ".repeat(10));
  await writeRunMarker(dir, "vm1", MARKER);
  assert.deepEqual(await readdir(dir), ["vm1.run.partial"]);
  assert.deepEqual(await readRunMarker(dir, "vm1"), MARKER);
});

test("writing into a missing directory fails and leaves nothing", async (t) => {
  const dir = await tempDir(t);
  await assert.rejects(writeRunMarker(join(dir, "gone"), "vm1", MARKER), { code: "ENOENT" });
  assert.deepEqual(await readdir(dir), []);
});

test("a corrupt, empty or unreadable marker still counts as a marker", async (t) => {
  const dir = await tempDir(t);
  for (const body of ["{\"pid\": 12, \"level\": \"in", "", "not json at all"]) {
    await writeFile(join(dir, "vm1.run.partial"), body);
    assert.deepEqual(await readRunMarker(dir, "vm1"), UNREADABLE, JSON.stringify(body));
  }
  await mkdir(join(dir, "vm2.run.partial"));
  assert.deepEqual(await readRunMarker(dir, "vm2"), UNREADABLE, "a directory in its place (EISDIR)");
});

test("clearing a missing marker is fine; clearing removes only that domain's marker", async (t) => {
  const dir = await tempDir(t);
  await clearRunMarker(dir, "vm1");
  await writeRunMarker(dir, "vm1", MARKER);
  await writeRunMarker(dir, "vm2", { ...MARKER, pid: 7 });
  await clearRunMarker(dir, "vm1");
  await clearRunMarker(dir, "vm1");
  assert.deepEqual(await readdir(dir), ["vm2.run.partial"]);
  assert.equal((await readRunMarker(dir, "vm2"))?.pid, 7);
});

test("a marker in the target directory is a *.partial: the original's partial check refuses inc/diff", async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, "sda.full.data"), "");
  await writeRunMarker(dir, "vm1", MARKER);
  const state = await inspectTargetDir(dir);
  assert.deepEqual(state.partials, ["vm1.run.partial"]);
  assert.equal(partialFailure(state, dir)?.lines[0], `Partial backup found in target directory: [${dir}]`);
  await clearRunMarker(dir, "vm1");
  assert.equal(partialFailure(await inspectTargetDir(dir), dir), null);
});
