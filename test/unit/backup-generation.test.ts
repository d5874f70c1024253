import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createNextGeneration, latestGeneration, placeIn } from "../../src/backup/generation.js";
import type { BackupArgs } from "../../src/backup/options.js";
import { tempDir } from "../helpers/tmp.js";

test("latestGeneration: the target itself without generation folders, else the highest generation.N (empty or not)", async (t) => {
  const target = await tempDir(t);
  assert.deepEqual(await latestGeneration(target), { dir: target, number: 1 });
  assert.deepEqual(await latestGeneration(join(target, "missing")), { dir: join(target, "missing"), number: 1 });
  await mkdir(join(target, "generation.2"));
  await mkdir(join(target, "generation.10"));
  await mkdir(join(target, "generation.x"));
  await mkdir(join(target, "generation.1"));
  await writeFile(join(target, "generation.11"), "a file, not a folder");
  assert.deepEqual(await latestGeneration(target), { dir: join(target, "generation.10"), number: 10 }, "folders only: a file named generation.11 is no generation");
});

test("createNextGeneration: generation.2 first, then one past the highest", async (t) => {
  const target = await tempDir(t);
  assert.deepEqual(await createNextGeneration(target), { dir: join(target, "generation.2"), number: 2 });
  await mkdir(join(target, "generation.7"));
  assert.deepEqual(await createNextGeneration(target), { dir: join(target, "generation.8"), number: 8 });
});

test("placeIn: the set's paths in a generation; -C gets a generation folder of its own", () => {
  const args = { domain: "vm", checkpointdir: null, chain: "" } as unknown as BackupArgs;
  assert.deepEqual(placeIn(args, false, "/b", { dir: "/b", number: 1 }), {
    stdoutMode: false, target: "/b", generation: 1, outDir: "/b", checkpointDir: "/b/checkpoints", cptPath: "/b/vm.cpt", chain: "",
  });
  const g3 = placeIn({ ...args, chain: "weekly" }, false, "/b", { dir: "/b/generation.3", number: 3 });
  assert.equal(g3.checkpointDir, "/b/generation.3/checkpoints");
  assert.equal(g3.cptPath, "/b/generation.3/vm.cpt");
  assert.equal(g3.chain, "weekly");
  const withC = { ...args, checkpointdir: "/cp" };
  assert.equal(placeIn(withC, false, "/b", { dir: "/b", number: 1 }).checkpointDir, "/cp");
  assert.equal(placeIn(withC, false, "/b", { dir: "/b/generation.2", number: 2 }).checkpointDir, "/cp/generation.2");
});
