import { test } from "node:test";
import assert from "node:assert/strict";
import { rm, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { verifySet } from "../../src/backupset/verify.js";
import { selectDataFiles } from "../../src/backupset/data-files.js";
import { DirectorySource } from "../../src/storage/directory-source.js";
import { IntegrityRecorder } from "../../src/format/integrity.js";
import { integrityFileName } from "../../src/backupset/layout.js";
import { Adler32 } from "../../src/format/checksum.js";
import { buildStream, pattern } from "../helpers/streams.js";
import { tempDir } from "../helpers/tmp.js";

const SIZE = 1 << 20;

async function makeSet(dir: string): Promise<void> {
  const files: [string, Buffer, string][] = [];
  const full = new IntegrityRecorder();
  files.push(["sda.full.data", await buildStream([{ start: 0, data: pattern(4096, 1) }, { start: 4096, zero: SIZE - 4096 }], { virtualSize: SIZE, integrity: full }), await full.text()]);
  for (const n of [1, 2]) {
    const rec = new IntegrityRecorder();
    const bytes = await buildStream([{ start: n * 8192, data: pattern(4096, n + 10) }], {
      virtualSize: SIZE,
      integrity: rec,
      meta: { incremental: true, checkpointName: `virtnbdbackup.${n}`, parentCheckpoint: `virtnbdbackup.${n - 1}` },
    });
    files.push([`sda.inc.virtnbdbackup.${n}.data`, bytes, await rec.text()]);
  }
  for (const [i, [name, bytes, integrity]] of files.entries()) {
    await writeFile(join(dir, name), bytes);
    await writeFile(join(dir, `${name}.chksum`), String(new Adler32().update(bytes).value));
    await writeFile(join(dir, integrityFileName(name)), integrity);
    await utimes(join(dir, name), 1000 + i, 1000 + i);
  }
  await writeFile(join(dir, "vm.cpt"), '["virtnbdbackup.0", "virtnbdbackup.1", "virtnbdbackup.2"]');
}

async function verify(dir: string): Promise<{ ok: boolean; errors: string[] }> {
  const set = new DirectorySource(dir);
  const errors: string[] = [];
  const ok = await verifySet(set, await selectDataFiles(set, {}), { bufferSize: 8192 }, { info: () => {}, error: (m) => errors.push(m) });
  return { ok, errors };
}

test("verify passes a complete set, also with shuffled mtimes", async (t) => {
  const dir = await tempDir(t);
  await makeSet(dir);
  assert.deepEqual(await verify(dir), { ok: true, errors: [] });
  await utimes(join(dir, "sda.full.data"), 5000, 5000);
  assert.equal((await verify(dir)).ok, true);
});

test("verify reports a missing middle or newest incremental, one line each", async (t) => {
  const dir = await tempDir(t);
  await makeSet(dir);
  await rm(join(dir, "sda.inc.virtnbdbackup.1.data"));
  const middle = await verify(dir);
  assert.equal(middle.ok, false);
  assert.match(middle.errors.join("\n"), /needs checkpoint \[virtnbdbackup\.1\]/);

  const dir2 = await tempDir(t);
  await makeSet(dir2);
  await rm(join(dir2, "sda.inc.virtnbdbackup.2.data"));
  const newest = await verify(dir2);
  assert.equal(newest.ok, false);
  assert.match(newest.errors.join("\n"), /\[virtnbdbackup\.2\] is listed in the checkpoint file/);
});

test("verify names the disk offset of damaged data even where .chksum is gone", async (t) => {
  const dir = await tempDir(t);
  await makeSet(dir);
  const name = join(dir, "sda.inc.virtnbdbackup.2.data");
  const { readFile } = await import("node:fs/promises");
  const bytes = await readFile(name);
  bytes[bytes.indexOf("data 0000") + 40 + 100]! ^= 0x40;
  await writeFile(name, bytes);
  await rm(`${name}.chksum`);
  const r = await verify(dir);
  assert.equal(r.ok, false);
  assert.match(r.errors.join("\n"), /disk offset 16384/);
});
