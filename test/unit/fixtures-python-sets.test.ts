/**
 * The checked-in sets of fixtures/ (written by the original Python tool, Debian 1.9.15 and
 * upstream 2.47; scripts/make-fixtures.ts) read by our code without a libvirtd: chain order,
 * dump, verify, and the merged chain at each checkpoint against the disk's true SHA-256 at
 * backup time (fixtures/expected.json). A copy with one flipped byte fails verify.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { cp, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { openBackupSet } from "../../src/backupset/open-set.js";
import { selectDataFiles } from "../../src/backupset/data-files.js";
import { buildChain, type ChainFile } from "../../src/backupset/chain-order.js";
import { dumpMetadata } from "../../src/backupset/dump.js";
import { verifySet } from "../../src/backupset/verify.js";
import { StreamReader } from "../../src/format/reader.js";
import { loadChain } from "../../src/chain/chain-loader.js";
import { ChainBackend } from "../../src/chain/chain-backend.js";
import { tempDir } from "../helpers/tmp.js";

const FIXTURES = new URL("../../fixtures/", import.meta.url).pathname;

interface CheckpointRecord {
  checkpoint: string;
  level: "full" | "inc";
  file: string;
  entry: string;
  sha256: string;
}

interface SetRecord {
  path: string;
  version: string;
  compressed: boolean;
  zip: boolean;
  disk: string;
  virtualSize: number;
  checkpoints: CheckpointRecord[];
}

const { sets } = JSON.parse(await readFile(join(FIXTURES, "expected.json"), "utf8")) as { sets: SetRecord[] };

test("fixtures: both versions, each with a plain, an lz4 and a zip set", () => {
  assert.deepEqual(
    sets.map((s) => s.path).sort(),
    ["python-1.9.15/lz4", "python-1.9.15/plain", "python-1.9.15/zip", "upstream-2.47/lz4", "upstream-2.47/plain", "upstream-2.47/zip"],
  );
  for (const s of sets) assert.deepEqual(s.checkpoints.map((c) => c.level), ["full", "inc"], s.path);
});

async function verifyDir(dir: string): Promise<{ ok: boolean; info: string[]; errors: string[] }> {
  const set = await openBackupSet(dir);
  try {
    const info: string[] = [];
    const errors: string[] = [];
    const ok = await verifySet(set, await selectDataFiles(set, {}), { bufferSize: 8192 }, { info: (m) => info.push(m), error: (m) => errors.push(m) });
    return { ok, info, errors };
  } finally {
    await set.close();
  }
}

/** SHA-256 of the whole disk as the merged chain of these `-f` items serves it. */
async function chainHash(items: string[]): Promise<{ sha256: string; size: number }> {
  const chain = await loadChain(items);
  try {
    const backend = new ChainBackend(chain.index, chain.sources);
    const hash = createHash("sha256");
    const buf = Buffer.alloc(192 * 1024); // not a divisor of the disk size: the last read is short
    for (let pos = 0; pos < backend.size; pos += buf.length) {
      const n = Math.min(buf.length, backend.size - pos);
      await backend.read(pos, n, buf);
      hash.update(buf.subarray(0, n));
    }
    return { sha256: hash.digest("hex"), size: backend.size };
  } finally {
    await chain.close();
  }
}

for (const s of sets) {
  const dir = join(FIXTURES, s.path);
  const withChksum = s.version !== "1.9.15" && !s.zip;

  test(`fixtures ${s.path}: chain order by checkpoint links, dump`, async () => {
    const set = await openBackupSet(dir);
    try {
      const files = await selectDataFiles(set, {});
      const chainFiles: ChainFile[] = [];
      // Reversed: the order must come from the metadata, not from the listing.
      for (const f of [...files].reverse()) {
        const source = await set.open(f.name);
        try {
          chainFiles.push({ name: f.name, meta: (await StreamReader.open(source, { trailer: false })).meta, mtimeMs: 0 });
        } finally {
          await source.close();
        }
      }
      const chain = buildChain(s.disk, chainFiles);
      assert.deepEqual(chain.map((f) => f.name), s.checkpoints.map((c) => c.entry));
      assert.deepEqual(
        chain.map((f) => [f.meta.checkpointName, f.meta.parentCheckpoint, f.meta.incremental, f.meta.virtualSize]),
        [
          ["virtnbdbackup.0", "", false, s.virtualSize],
          ["virtnbdbackup.1", "virtnbdbackup.0", true, s.virtualSize],
        ],
      );

      const logged: string[] = [];
      const dumped = JSON.parse((await dumpMetadata(set, files, { info: (m) => logged.push(m), error: (m) => assert.fail(m) })).text) as Record<string, unknown>[];
      assert.deepEqual(
        dumped.map((m) => [m["diskName"], m["checkpointName"], m["incremental"], m["compressed"] !== false, m["compressionMethod"]]).sort(),
        s.checkpoints.map((c) => [s.disk, c.checkpoint, c.level === "inc", s.compressed, "lz4"]).sort(),
      );
      assert.equal(logged.filter((m) => /Compressed stream found: \[lz4\]/.test(m)).length, s.compressed ? 2 : 0);
    } finally {
      await set.close();
    }
  });

  test(`fixtures ${s.path}: verify passes${withChksum ? ", the .chksum files match" : ""}`, async () => {
    const r = await verifyDir(dir);
    assert.deepEqual(r.errors, []);
    assert.equal(r.ok, true);
    assert.equal(r.info.filter((m) => m === "OK").length, withChksum ? 2 : 0, r.info.join("\n"));
    assert.ok(r.info.includes(`Backup chain of disk [${s.disk}]: 2 file(s), complete.`), r.info.join("\n"));
  });

  test(`fixtures ${s.path}: the merged chain at each checkpoint is the disk content at backup time`, async () => {
    for (let i = 0; i < s.checkpoints.length; i++) {
      const items = s.checkpoints.slice(0, i + 1).map((c) => join(dir, c.file));
      assert.deepEqual(await chainHash(items), { sha256: s.checkpoints[i]!.sha256, size: s.virtualSize }, `${s.path} up to ${s.checkpoints[i]!.checkpoint}`);
    }
    assert.notEqual(s.checkpoints[0]!.sha256, s.checkpoints[1]!.sha256);
  });

  test(`fixtures ${s.path}: a copy with one flipped byte in the inc fails verify`, async (t) => {
    const copy = await tempDir(t, "vnbt-fixture-");
    await cp(dir, copy, { recursive: true });
    const inc = s.checkpoints[1]!;
    const path = join(copy, inc.file);
    const bytes = await readFile(path);
    const text = bytes.toString("latin1");
    const meta = text.indexOf("meta ");
    const frame = /data [0-9a-f]{16} [0-9a-f]{16}\r\n/.exec(text.slice(meta));
    assert.ok(meta >= 0 && frame, `${inc.file}: no data frame found`);
    const header = meta + frame.index;
    // Payload bytes carry a checksum in .chksum files and lz4 frames; otherwise flip a header byte.
    const payloadChecked = withChksum || s.compressed;
    bytes[payloadChecked ? header + 40 + 100 : header + 1]! ^= 0x20;
    await writeFile(path, bytes);
    const r = await verifyDir(copy);
    assert.equal(r.ok, false);
    assert.equal(r.errors.length, 1, r.errors.join("\n"));
    assert.match(r.errors[0]!, withChksum ? /^Stored sums do not match/ : /^Stream check failed: .*sda\.inc\.virtnbdbackup\.1\.data/);
  });
}
