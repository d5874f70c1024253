// Stream files written by our format layer are restored bit-exact by the original's
// virtnbdrestore (Debian 1.9.15): uncompressed and lz4 (incl. chunked 32 MiB pieces), full + inc.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, writeFile, utimes } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { buildStream, pattern, type TestExtent } from "../helpers/streams.js";
import { runPython, PY_RESTORE } from "../helpers/python-tool.js";
import { tempDir } from "../helpers/tmp.js";

const MiB = 1024 * 1024;
const SIZE = 96 * MiB;

function fullExtents(): TestExtent[] {
  // A 40 MiB extent crosses the 32 MiB piece size (chunked trailer entry when compressed).
  const big = Buffer.alloc(40 * MiB);
  for (let i = 0; i < big.length; i += 4096) pattern(512, i / 4096 + 1).copy(big, i);
  return [
    { start: 0, data: pattern(64 * 1024, 1) },
    { start: 64 * 1024, zero: MiB - 64 * 1024 },
    { start: MiB, data: big },
    { start: 41 * MiB, zero: 20 * MiB },
    { start: 61 * MiB, data: Buffer.alloc(MiB, 0x5a) },
    { start: 62 * MiB, zero: SIZE - 62 * MiB },
  ];
}

const incExtents: TestExtent[] = [
  { start: 0, data: Buffer.alloc(4096, 0xcd) },
  { start: 61 * MiB + 512, data: pattern(8192, 77) },
];

function expectedImage(): Buffer {
  const disk = Buffer.alloc(SIZE);
  for (const e of [...fullExtents(), ...incExtents]) if ("data" in e) e.data.copy(disk, e.start);
  return disk;
}

for (const level of [undefined, 2]) {
  test(`Python virtnbdrestore restores our ${level ? "compressed" : "plain"} full+inc chain bit-exact`, async (t) => {
    const dir = await tempDir(t);
    const set = join(dir, "set");
    const out = join(dir, "out");
    await mkdir(set);
    await mkdir(out);
    const full = await buildStream(fullExtents(), { virtualSize: SIZE, compressLevel: level });
    const inc = await buildStream(incExtents, {
      virtualSize: SIZE,
      compressLevel: level,
      meta: { incremental: true, checkpointName: "virtnbdbackup.1", parentCheckpoint: "virtnbdbackup.0" },
    });
    await writeFile(join(set, "sda.full.data"), full);
    await writeFile(join(set, "sda.inc.virtnbdbackup.1.data"), inc);
    await utimes(join(set, "sda.full.data"), 1000, 1000);
    // 1.9.15 wants a vmconfig even in --sequence mode.
    await writeFile(join(set, "vmconfig.virtnbdbackup.1.xml"), "<domain type='qemu'><name>synthetic</name></domain>");
    const r = await runPython(PY_RESTORE, ["-i", set, "-o", out, "--sequence", "sda.full.data,sda.inc.virtnbdbackup.1.data", "-n"]);
    assert.equal(r.exitCode, 0, String(r.all));
    assert.doesNotMatch(String(r.all), /ERROR|Traceback/);
    const expected = join(dir, "expected.raw");
    await writeFile(expected, expectedImage());
    const cmp = await execa("qemu-img", ["compare", "-f", "raw", "-F", "qcow2", expected, join(out, "sda")], { reject: false });
    assert.equal(cmp.exitCode, 0, cmp.stdout + cmp.stderr);
  });
}
