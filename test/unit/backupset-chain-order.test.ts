import { test } from "node:test";
import assert from "node:assert/strict";
import { buildChain, ChainError, checkChainAgainstCpt, cutChain, type ChainFile } from "../../src/backupset/chain-order.js";
import type { StreamMetadata } from "../../src/format/metadata.js";

let clock = 0;
function file(name: string, checkpointName: string, parentCheckpoint: string, incremental: boolean, date: string): ChainFile {
  const meta: StreamMetadata = {
    virtualSize: 1 << 20, dataSize: 0, date, diskName: "sda", diskFormat: "qcow2", checkpointName,
    compressed: false, compressionMethod: "lz4", parentCheckpoint, incremental, streamVersion: 2,
  };
  return { name, meta, mtimeMs: ++clock };
}

const full = file("sda.full.data", "virtnbdbackup.0", "", false, "2026-01-01T00:00:00");
const inc1 = file("sda.inc.virtnbdbackup.1.data", "virtnbdbackup.1", "virtnbdbackup.0", true, "2026-01-02T00:00:00");
const diffA = file("sda.diff.1767400000.data", "virtnbdbackup.2", "virtnbdbackup.1", true, "2026-01-03T00:00:00");
const diffB = file("sda.diff.1767500000.data", "virtnbdbackup.2", "virtnbdbackup.1", true, "2026-01-03T12:00:00.5");
const inc2 = file("sda.inc.virtnbdbackup.2.data", "virtnbdbackup.2", "virtnbdbackup.1", true, "2026-01-04T00:00:00");
const inc3 = file("sda.inc.virtnbdbackup.3.data", "virtnbdbackup.3", "virtnbdbackup.2", true, "2026-01-05T00:00:00");
const names = (c: ChainFile[]) => c.map((f) => f.name);

test("chain order comes from checkpoint links, not from mtimes or listing order", () => {
  const shuffled = [inc3, diffB, full, inc2, diffA, inc1].map((f) => ({ ...f, mtimeMs: 1 }));
  assert.deepEqual(names(buildChain("sda", shuffled)), names([full, inc1, diffA, diffB, inc2, inc3]));
});

test("--until cuts after the first file with that checkpoint name", () => {
  const chain = buildChain("sda", [full, inc1, inc2, inc3]);
  assert.deepEqual(names(cutChain("sda", chain, "virtnbdbackup.1")), names([full, inc1]));
  assert.deepEqual(names(cutChain("sda", chain, "virtnbdbackup.0")), names([full]));
  assert.throws(() => cutChain("sda", chain, "virtnbdbackup.9"), /not found/);
});

test("--until names the file that created the checkpoint, not a diff that carries the same name", () => {
  const chain = buildChain("sda", [full, inc1, diffA, diffB, inc2, inc3]);
  assert.deepEqual(names(cutChain("sda", chain, "virtnbdbackup.2")), names([full, inc1, diffA, diffB, inc2]));
  // No file created it (the inc after the diffs is not there): the first diff, as the original.
  assert.deepEqual(names(cutChain("sda", buildChain("sda", [full, inc1, diffA, diffB]), "virtnbdbackup.2")), names([full, inc1, diffA]));
  // Offline incs carry their parent's name: the inc that created it still marks the point.
  const offline = file("sda.inc.virtnbdbackup.2.1767600000.data", "virtnbdbackup.2", "virtnbdbackup.2", true, "2026-01-06T00:00:00");
  assert.deepEqual(names(cutChain("sda", buildChain("sda", [full, inc1, inc2, offline]), "virtnbdbackup.2")), names([full, inc1, inc2]));
});

test("a deleted middle incremental is refused, naming the missing checkpoint", () => {
  assert.throws(() => buildChain("sda", [full, inc1, inc3]), (e: Error) => e instanceof ChainError && /needs checkpoint \[virtnbdbackup\.2\]/.test(e.message));
});

test("an earlier point restores although a later file is missing or orphaned", () => {
  assert.deepEqual(names(cutChain("sda", buildChain("sda", [full, inc1, inc3], "virtnbdbackup.1"), "virtnbdbackup.1")), names([full, inc1]));
  assert.throws(() => buildChain("sda", [full, inc1, inc3], "virtnbdbackup.3"), /needs checkpoint \[virtnbdbackup\.2\]/);
  // The original's offline inc replaced the online inc of virtnbdbackup.1 (same file name).
  const replacing = file("sda.inc.virtnbdbackup.1.data", "virtnbdbackup.1", "virtnbdbackup.1", true, "2026-01-06T00:00:00");
  assert.throws(() => buildChain("sda", [full, replacing]), /replaced the incremental which created \[virtnbdbackup\.1\].*--until/);
  assert.deepEqual(names(buildChain("sda", [full, replacing], "virtnbdbackup.0")), names([full]));
});

test("a deleted newest incremental is caught by the checkpoint list", () => {
  const cpt = ["virtnbdbackup.0", "virtnbdbackup.1", "virtnbdbackup.2", "virtnbdbackup.3"];
  const chain = buildChain("sda", [full, inc1, inc2]);
  assert.throws(() => checkChainAgainstCpt("sda", chain, cpt), /\[virtnbdbackup\.3\] is listed/);
  checkChainAgainstCpt("sda", chain, cpt, "virtnbdbackup.2");
  checkChainAgainstCpt("sda", buildChain("sda", [full, inc1, inc2, inc3]), cpt);
});

test("duplicates, missing base, strays after a copy", () => {
  const dup = file("sda.inc.virtnbdbackup.1.data.copy.data", "virtnbdbackup.1", "virtnbdbackup.0", true, "2026-01-02T00:00:01");
  dup.name = "sda.inc.other.data";
  assert.throws(() => buildChain("sda", [full, inc1, dup]), /both continue checkpoint/);
  assert.throws(() => buildChain("sda", [inc1, inc2]), /Unable to locate base full or copy backup/);
  const copy = file("sda.copy.data", "virtnbdbackup.0", "", false, "2026-01-01T00:00:00");
  assert.deepEqual(names(buildChain("sda", [copy])), ["sda.copy.data"]);
  assert.throws(() => buildChain("sda", [copy, inc1]), /cannot follow the copy backup/);
});

test("an inc that fell back to full continues the chain; offline incs attach to their checkpoint", () => {
  const fallback = file("sda.inc.virtnbdbackup.2.data", "virtnbdbackup.2", "", false, "2026-01-04T00:00:00");
  const offline = file("sda.inc.virtnbdbackup.2.1767600000.data", "virtnbdbackup.2", "virtnbdbackup.2", true, "2026-01-06T00:00:00");
  assert.deepEqual(names(buildChain("sda", [offline, inc3, fallback, inc1, full])), names([full, inc1, fallback, offline, inc3]));
});
