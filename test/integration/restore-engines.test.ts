/**
 * The restore engines agree on a chain whose later file is a full-style stream without data (an
 * inc that fell back to full on a disk that had become all holes): its zero frames must wipe what
 * the full wrote, also through the NBD-writes engine remote restores use (which once skipped
 * every file without data). Synthetic streams, real qemu-img / qemu-nbd, no libvirt domain.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { assertOk, fileHash, imageHash, ourRestore } from "../helpers/our-tool.js";
import { buildStream, pattern } from "../helpers/streams.js";
import { tempDir } from "../helpers/tmp.js";
import { contentHash, MiB } from "../helpers/domains.js";

test("a full-style inc without data zeroes the full's data: convert and NBD-writes engines, bit-exact", async (t) => {
  const set = await tempDir(t, "vnbt-engines-");
  const size = 4 * MiB;
  const data = Buffer.alloc(2 * MiB, 0x5a);
  await writeFile(join(set, "sda.full.data"), await buildStream([{ start: 0, data }, { start: 2 * MiB, zero: 2 * MiB }], { virtualSize: size }));
  const fellBack = await buildStream([{ start: 0, zero: size }], {
    virtualSize: size,
    meta: { checkpointName: "virtnbdbackup.1", parentCheckpoint: "", incremental: false, date: "2026-01-03T03:04:05.678901" },
  });
  await writeFile(join(set, "sda.inc.virtnbdbackup.1.data"), fellBack);
  // A restore needs the VM config even for a --sequence (the original's rule).
  await writeFile(join(set, "vmconfig.virtnbdbackup.1.xml"), "<domain type='kvm'><name>vm</name><devices/></domain>");
  const zeros = contentHash(size, []);
  for (const engine of ["convert", "convert-nbd", "nbd-writes"]) {
    const out = join(set, `out-${engine}`);
    const r = assertOk(
      await ourRestore(["-i", set, "-o", out, "-n", "--sequence", "sda.full.data,sda.inc.virtnbdbackup.1.data"], { env: { ...process.env, VIRTNBD_RESTORE_ENGINE: engine } }),
      `restore with ${engine}`,
    );
    assert.doesNotMatch(r.stderr, /inc\.virtnbdbackup\.1\.data\] contains no dirty blocks, skipping/, engine);
    assert.equal(await imageHash(join(out, "sda"), "qcow2"), zeros, `${engine}: the full's data is gone`);
  }
});

test("the same set restored twice gives byte-identical qcow2 files, with each engine (qemu-img writes in order)", async (t) => {
  const set = await tempDir(t, "vnbt-determinism-");
  const size = 64 * MiB;
  const extents = (count: number, seed: number) =>
    Array.from({ length: count }, (_, i) => ({ start: ((i * 7919 + seed) % (size / (64 * 1024))) * 64 * 1024, i }))
      .sort((a, b) => a.start - b.start)
      .filter((e, i, all) => i === 0 || e.start !== all[i - 1]!.start)
      .map((e) => ({ start: e.start, data: pattern(64 * 1024, seed + e.i) }));
  await writeFile(join(set, "sda.full.data"), await buildStream(extents(300, 1), { virtualSize: size }));
  const inc = await buildStream(extents(150, 5), {
    virtualSize: size,
    meta: { checkpointName: "virtnbdbackup.1", parentCheckpoint: "virtnbdbackup.0", incremental: true, date: "2026-01-03T03:04:05.678901" },
  });
  await writeFile(join(set, "sda.inc.virtnbdbackup.1.data"), inc);
  await writeFile(join(set, "vmconfig.virtnbdbackup.1.xml"), "<domain type='kvm'><name>vm</name><devices/></domain>");
  const contents = new Set<string>();
  for (const engine of ["convert", "convert-nbd", "nbd-writes"]) {
    const files = new Set<string>();
    for (const round of [1, 2]) {
      const out = join(set, `out-${engine}-${round}`);
      const env = { ...process.env, VIRTNBD_RESTORE_ENGINE: engine };
      assertOk(await ourRestore(["-i", set, "-o", out, "-n", "--sequence", "sda.full.data,sda.inc.virtnbdbackup.1.data"], { env }), `${engine} ${round}`);
      files.add(await fileHash(join(out, "sda")));
      contents.add(await imageHash(join(out, "sda"), "qcow2"));
    }
    assert.equal(files.size, 1, `${engine}: two restores of the same set are byte-identical files`);
  }
  assert.equal(contents.size, 1, "every engine restores the same content");
});
