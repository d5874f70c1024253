import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { generationWithCheckpoint, listGenerations, newestGeneration, nextGenerationDir } from "../../src/backupset/generations.js";
import { checkpointName, cptFileName, dataFileName, generationDirName } from "../../src/backupset/layout.js";
import { formatCpt } from "../../src/backupset/cpt.js";
import { buildStream } from "../helpers/streams.js";
import { tempDir } from "../helpers/tmp.js";

const touch = async (dir: string, name: string, text = ""): Promise<void> => {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, name), text);
};

/** A set with a full and incs up to `last`, its `.cpt` listing `first..last`. */
async function fakeSet(dir: string, first: number, last: number, o: { cpt?: boolean } = {}): Promise<void> {
  await touch(dir, dataFileName("sda", "full", ""));
  for (let i = first + 1; i <= last; i++) await touch(dir, dataFileName("sda", "inc", checkpointName(i)));
  const names = Array.from({ length: last - first + 1 }, (_, i) => checkpointName(first + i));
  if (o.cpt !== false) await touch(dir, cptFileName("vm"), formatCpt(names));
}

test("listGenerations: the top level, then generation.N folders with data, by N", async (t) => {
  const target = await tempDir(t, "vnbt-gen-");
  assert.deepEqual(await listGenerations(target), []);
  assert.deepEqual(await listGenerations(join(target, "missing")), []);
  assert.equal(await newestGeneration(target), target);
  await fakeSet(target, 0, 2);
  assert.deepEqual(await listGenerations(target), [{ index: 1, dir: target }]);
  assert.equal(await newestGeneration(target), target);
  await fakeSet(join(target, generationDirName(10)), 7, 7);
  await fakeSet(join(target, generationDirName(2)), 3, 6);
  // Not generations: no data (an unfinished first run), other names, a file of that name.
  await touch(join(target, generationDirName(3)), "sda.full.data.partial");
  await touch(join(target, "generation.1"), "sda.full.data");
  await touch(join(target, "generation.x"), "sda.full.data");
  await touch(target, "generation.11");
  assert.deepEqual(await listGenerations(target), [
    { index: 1, dir: target },
    { index: 2, dir: join(target, "generation.2") },
    { index: 10, dir: join(target, "generation.10") },
  ]);
  assert.equal(await newestGeneration(target), join(target, "generation.10"));
  // A data file given as -i: no generations.
  assert.deepEqual(await listGenerations(join(target, "sda.full.data")), []);
});

test("listGenerations: generation folders without a top-level set", async (t) => {
  const target = await tempDir(t, "vnbt-gen-");
  await fakeSet(join(target, generationDirName(2)), 3, 4);
  assert.deepEqual(await listGenerations(target), [{ index: 2, dir: join(target, "generation.2") }]);
  assert.equal(await newestGeneration(target), join(target, "generation.2"));
});

test("nextGenerationDir: max N + 1, at least 2; folders without data count", async (t) => {
  const target = await tempDir(t, "vnbt-gen-");
  assert.equal(await nextGenerationDir(target), join(target, "generation.2"));
  await fakeSet(target, 0, 1);
  assert.equal(await nextGenerationDir(target), join(target, "generation.2"));
  await mkdir(join(target, generationDirName(2)));
  assert.equal(await nextGenerationDir(target), join(target, "generation.3"));
  await fakeSet(join(target, generationDirName(4)), 2, 2);
  await touch(target, "generation.9"); // a file, not a folder
  assert.equal(await nextGenerationDir(target), join(target, "generation.5"));
});

test("generationWithCheckpoint: by .cpt, then inc file names, then the full's metadata", async (t) => {
  const target = await tempDir(t, "vnbt-gen-");
  await fakeSet(target, 0, 4);
  await fakeSet(join(target, generationDirName(2)), 5, 7);
  // Generation 3 lost its .cpt: its inc file names tell.
  await fakeSet(join(target, generationDirName(3)), 8, 9, { cpt: false });
  for (const [cp, index] of [[0, 1], [4, 1], [5, 2], [7, 2], [9, 3]] as const) {
    const g = await generationWithCheckpoint(target, checkpointName(cp));
    assert.equal(g?.index, index, checkpointName(cp));
    assert.equal(g?.dir, index === 1 ? target : join(target, generationDirName(index)));
  }
  assert.equal(await generationWithCheckpoint(target, checkpointName(12)), null);
  assert.equal(await generationWithCheckpoint(target, "virtnbdbackup"), null);
  // virtnbdbackup.8 (generation 3's full) is in no .cpt and no file name: only the stream says it.
  assert.equal(await generationWithCheckpoint(target, checkpointName(8)), null);
  const full = await buildStream([{ start: 0, data: Buffer.alloc(4096, 1) }], { virtualSize: 65536, meta: { checkpointName: checkpointName(8) } });
  await writeFile(join(target, generationDirName(3), dataFileName("sda", "full", "")), full);
  assert.equal((await generationWithCheckpoint(target, checkpointName(8)))?.index, 3);
  // The .cpt wins over a file name elsewhere; a .cpt that is not JSON lists nothing.
  await touch(join(target, generationDirName(3)), dataFileName("sda", "inc", checkpointName(6)));
  assert.equal((await generationWithCheckpoint(target, checkpointName(6)))?.index, 2);
  await touch(join(target, generationDirName(2)), cptFileName("vm"), "not json");
  assert.equal((await generationWithCheckpoint(target, checkpointName(6)))?.index, 3);
  assert.equal(await generationWithCheckpoint(target, checkpointName(5)), null, "the .cpt is gone and the full is no stream");
});

test("generationWithCheckpoint: --chain names", async (t) => {
  const target = await tempDir(t, "vnbt-gen-");
  await touch(target, dataFileName("sda", "full", ""));
  await touch(target, cptFileName("vm"), formatCpt([checkpointName(0, "weekly"), checkpointName(1, "weekly")]));
  await touch(join(target, generationDirName(2)), dataFileName("sda", "full", ""));
  await touch(join(target, generationDirName(2)), dataFileName("sda", "inc", checkpointName(3, "weekly")));
  await touch(join(target, generationDirName(2)), cptFileName("vm"), formatCpt([checkpointName(2, "weekly"), checkpointName(3, "weekly")]));
  assert.equal((await generationWithCheckpoint(target, "virtnbdbackup.weekly.1"))?.index, 1);
  assert.equal((await generationWithCheckpoint(target, "virtnbdbackup.weekly.2"))?.index, 2);
  assert.equal(await generationWithCheckpoint(target, "virtnbdbackup.2"), null);
});
