/**
 * virtnbdrestore on a target with generations (docs/backup-set.md, "Generations"): the top level
 * is a set the Python tool wrote (fixtures/upstream-2.47/plain: virtnbdbackup.0, .1),
 * `generation.2` a synthetic chain made with our stream writer whose checkpoints go on
 * (virtnbdbackup.2 full, .3 inc). `-i target` restores the newest generation, `--until` the one
 * holding the checkpoint; each result is compared bit-exact. Real qemu-img / qemu-nbd, no
 * libvirt domain.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { cp, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { checkpointName, cptFileName, dataFileName, generationDirName, qcowJsonFileName, vmconfigFileName } from "../../src/backupset/layout.js";
import { formatCpt } from "../../src/backupset/cpt.js";
import { assertOk, imageHash, logLines, ourRestore, ROOT, type ToolResult } from "../helpers/our-tool.js";
import { buildStream, type TestExtent } from "../helpers/streams.js";
import { tempDir } from "../helpers/tmp.js";
import { contentHash, seededBytes, type ContentOp } from "../helpers/domains.js";

const FIXTURE = join(ROOT, "fixtures/upstream-2.47/plain");
const SIZE = 4 * 1024 * 1024;

interface ExpectedSet {
  path: string;
  checkpoints: { checkpoint: string; sha256: string }[];
}

const extentsOf = (ops: ContentOp[]): TestExtent[] =>
  ops.map((op) =>
    "zero" in op
      ? { start: op.offset, zero: op.length }
      : { start: op.offset, data: "seed" in op ? seededBytes(op.seed, op.length) : Buffer.alloc(op.length, op.pattern) },
  );

/** A full's frames: the data, `zero` frames over the rest, [0, SIZE) covered (docs/stream-format.md). */
function fullExtents(ops: ContentOp[]): TestExtent[] {
  const out: TestExtent[] = [];
  let at = 0;
  for (const e of extentsOf(ops)) {
    if (e.start > at) out.push({ start: at, zero: e.start - at });
    out.push(e);
    at = e.start + ("data" in e ? e.data.length : e.zero);
  }
  if (at < SIZE) out.push({ start: at, zero: SIZE - at });
  return out;
}

/** Generation 2 of the fixture's domain `vnbfix`: a full (virtnbdbackup.2) and an inc (virtnbdbackup.3). */
async function writeGeneration2(dir: string): Promise<{ full: string; inc: string }> {
  await mkdir(dir);
  const fullOps: ContentOp[] = [
    { pattern: 0x42, offset: 0, length: 256 * 1024 },
    { seed: 77, offset: 1024 * 1024, length: 128 * 1024 },
    { pattern: 0x99, offset: SIZE - 8192, length: 8192 },
  ];
  const incOps: ContentOp[] = [
    { seed: 78, offset: 64 * 1024, length: 32 * 1024 },
    // An inc has data frames only (docs/stream-format.md): zero bytes written as data.
    { pattern: 0, offset: 1024 * 1024, length: 64 * 1024 },
    { pattern: 0x33, offset: 3 * 1024 * 1024, length: 16 * 1024 },
  ];
  const full = await buildStream(fullExtents(fullOps), {
    virtualSize: SIZE,
    meta: { checkpointName: checkpointName(2), parentCheckpoint: "", incremental: false, date: "2026-02-01T10:00:00.000000" },
  });
  const inc = await buildStream(extentsOf(incOps), {
    virtualSize: SIZE,
    meta: { checkpointName: checkpointName(3), parentCheckpoint: checkpointName(2), incremental: true, date: "2026-02-02T10:00:00.000000" },
  });
  await writeFile(join(dir, dataFileName("sda", "full", "")), full);
  await writeFile(join(dir, dataFileName("sda", "inc", checkpointName(3))), inc);
  await writeFile(join(dir, cptFileName("vnbfix")), formatCpt([checkpointName(2), checkpointName(3)]));
  // Its VM config differs from generation 1's by a title: which config a restore used shows.
  const xml = await readFile(join(FIXTURE, vmconfigFileName(checkpointName(1))), "utf8");
  for (const n of [2, 3]) {
    await writeFile(join(dir, vmconfigFileName(checkpointName(n))), xml.replace("<name>vnbfix</name>", `<name>vnbfix</name>\n  <title>generation 2 at ${n}</title>`));
    await cp(join(FIXTURE, qcowJsonFileName("sda", checkpointName(1))), join(dir, qcowJsonFileName("sda", checkpointName(n))));
  }
  return { full: contentHash(SIZE, fullOps), inc: contentHash(SIZE, [...fullOps, ...incOps]) };
}

const GENERATIONS_LINE = /Target holds \[(\d+)\] generations: using \[(.*)\]/;

async function restoreTo(input: string, out: string, extra: string[]): Promise<ToolResult> {
  return ourRestore(["-i", input, "-o", out, "-n", ...extra]);
}

test("a target with two generations: the newest by default, --until picks the generation holding the checkpoint", async (t) => {
  const work = await tempDir(t, "vnbt-gens-");
  const target = join(work, "target");
  await cp(FIXTURE, target, { recursive: true });
  const gen2 = join(target, generationDirName(2));
  const truth2 = await writeGeneration2(gen2);
  // A generation folder without data (a new chain whose first run never finished) is none.
  await mkdir(join(target, generationDirName(3)));
  await writeFile(join(target, generationDirName(3), "sda.full.data.partial"), "");
  const expected = (JSON.parse(await readFile(join(ROOT, "fixtures/expected.json"), "utf8")) as { sets: ExpectedSet[] }).sets.find(
    (s) => s.path === "upstream-2.47/plain",
  )!;
  const truth1 = Object.fromEntries(expected.checkpoints.map((c) => [c.checkpoint, c.sha256]));
  assert.equal(Object.keys(truth1).length, 2);

  const cases: { label: string; extra: string[]; dir: string; sha: string; title: string | null }[] = [
    { label: "newest", extra: [], dir: gen2, sha: truth2.inc, title: "generation 2 at 3" },
    { label: "--until virtnbdbackup.0", extra: ["--until", checkpointName(0)], dir: target, sha: truth1[checkpointName(0)]!, title: null },
    { label: "--until virtnbdbackup.1", extra: ["--until", checkpointName(1)], dir: target, sha: truth1[checkpointName(1)]!, title: null },
    { label: "--until virtnbdbackup.2", extra: ["--until", checkpointName(2)], dir: gen2, sha: truth2.full, title: "generation 2 at 2" },
    { label: "--until virtnbdbackup.3", extra: ["--until", checkpointName(3)], dir: gen2, sha: truth2.inc, title: "generation 2 at 3" },
  ];
  for (const [i, c] of cases.entries()) {
    const out = join(work, `out${i}`);
    const r = assertOk(await restoreTo(target, out, c.extra), c.label);
    assert.deepEqual(logLines(r, "ERROR"), [], `${c.label}:\n${r.stderr}`);
    const line = GENERATIONS_LINE.exec(r.stderr);
    assert.deepEqual([line?.[1], line?.[2]], ["2", c.dir], `${c.label}: the generation line\n${r.stderr}`);
    assert.equal(await imageHash(join(out, "sda.qcow2"), "qcow2"), c.sha, `${c.label}: sda`);
    const config = await readFile(join(out, "vmconfig.xml"), "utf8");
    assert.equal(/<title>(.*)<\/title>/.exec(config)?.[1] ?? null, c.title, `${c.label}: the VM config of that generation`);
  }

  // A checkpoint no generation holds: one ERROR line, exit 1, nothing restored.
  const missing = await restoreTo(target, join(work, "missing"), ["--until", checkpointName(7)]);
  assert.equal(missing.exitCode, 1, missing.all);
  assert.deepEqual(logLines(missing, "ERROR"), logLines(missing, "ERROR").slice(0, 1));
  assert.match(logLines(missing, "ERROR")[0] ?? "", /Checkpoint \[virtnbdbackup\.7\] not found in any of the \[2\] generations of \[.*\/target\]/);

  // One generation given directly: as any set, no generation line.
  const direct = assertOk(await restoreTo(gen2, join(work, "direct"), ["--until", checkpointName(2)]), "-i generation.2");
  assert.doesNotMatch(direct.stderr, /Target holds/);
  assert.equal(await imageHash(join(work, "direct", "sda.qcow2"), "qcow2"), truth2.full);

  // dump and verify read the chosen generation only.
  const dump = assertOk(await ourRestore(["-i", target, "-o", "dump"]), "dump");
  const dumped = (JSON.parse(dump.stdout) as { checkpointName: string }[]).map((m) => m.checkpointName).sort();
  assert.deepEqual(dumped, [checkpointName(2), checkpointName(3)]);
  const verify = assertOk(await ourRestore(["-i", target, "-o", "verify", "--until", checkpointName(1)]), "verify generation 1");
  assert.match(verify.stderr, new RegExp(`using \\[${target}\\]`));
  assert.match(verify.stderr, /Backup chain of disk \[sda\]: 2 file\(s\), complete\./);
});

test("a target without generation folders: no generation line", async (t) => {
  const work = await tempDir(t, "vnbt-gens-");
  const r = assertOk(await restoreTo(FIXTURE, join(work, "out"), []), "fixture restore");
  assert.doesNotMatch(r.stderr, /Target holds/);
});
