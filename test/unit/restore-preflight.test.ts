/**
 * What a restore checks before it writes anything: `-D` under a name a domain already has is
 * refused before any disk is restored (a fake libvirt connection; the fixture set of the
 * Python tool), and the `-d` disk check.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { parseRestoreArgs } from "../../src/cli/args.js";
import { openBackupSet } from "../../src/backupset/open-set.js";
import type { Connection } from "../../src/libvirt/connection.js";
import { LogManager } from "../../src/report/log.js";
import { restoreSet } from "../../src/restore/restore.js";
import { checkRequestedDisk, disksInSet } from "../../src/restore/preflight.js";
import { restoredName } from "../../src/restore/config.js";
import { tempDir } from "../helpers/tmp.js";

const PLAIN = new URL("../../fixtures/upstream-2.47/plain", import.meta.url).pathname;

function capturingLogger() {
  const lines: string[] = [];
  const manager = new LogManager();
  manager.configure({ prog: "virtnbdrestore", nocolor: true, stderr: { write: (s: string) => void lines.push(s) } });
  return { log: manager.getLogger(), lines };
}

/** A libvirt connection where every domain name is taken; records what the restore asked. */
function connectionWithEveryNameTaken(calls: string[]): Connection {
  const fake = {
    lookupDomain: async (name: string) => {
      calls.push(`lookupDomain ${name}`);
      return { free: () => calls.push("free") };
    },
    defineXML: async () => {
      calls.push("defineXML");
      throw new Error("defineXML must not be reached");
    },
    storagePoolByTargetPath: async () => {
      calls.push("storagePoolByTargetPath");
      throw new Error("no pool");
    },
    close: async () => void calls.push("close"),
  };
  return fake as unknown as Connection;
}

for (const [label, extra, name] of [
  ["-N taken", ["-N", "taken"], "taken"],
  ["default name restore_<name> taken", [], "restore_vnbfix"],
] as const) {
  test(`-D with ${label}: refused before the output directory or any disk is made`, async (t) => {
    const out = join(await tempDir(t, "vnbt-rpre-"), "out");
    const args = parseRestoreArgs(["-i", PLAIN, "-o", out, "-D", "-n", ...extra]);
    const set = await openBackupSet(PLAIN);
    const calls: string[] = [];
    const { log, lines } = capturingLogger();
    try {
      const code = await restoreSet(args, set, undefined, log, { write: () => true }, { openLibvirt: async () => connectionWithEveryNameTaken(calls) });
      assert.equal(code, 1);
    } finally {
      await set.close();
    }
    const errors = lines.filter((l) => / ERROR /.test(l));
    assert.equal(errors.length, 1, lines.join(""));
    assert.match(errors[0]!, new RegExp(`a domain named \\[${name}\\] already exists`));
    assert.deepEqual(calls, [`lookupDomain ${name}`, "free", "close"]);
    await assert.rejects(stat(out), { code: "ENOENT" }, "no output directory");
  });
}

test("restoredName: --name, else restore_<name>, kept when it starts with restore", () => {
  assert.equal(restoredName("vm", "other"), "other");
  assert.equal(restoredName("vm", null), "restore_vm");
  assert.equal(restoredName("restore_vm", null), "restore_vm");
});

test("checkRequestedDisk: no -d, a disk of the set, a disk it does not have", () => {
  const listing = ["sda.full.data", "sda.inc.virtnbdbackup.1.data", "vdb.copy.data", "vmconfig.virtnbdbackup.0.xml", "sub/vdc.full.data"].map((name) => ({
    name,
    size: 0,
    mtimeMs: 0,
  }));
  assert.deepEqual(disksInSet(listing), ["sda", "vdb"]);
  const { log, lines } = capturingLogger();
  assert.equal(checkRequestedDisk(null, listing, log), true);
  assert.equal(checkRequestedDisk("vdb", listing, log), true);
  assert.equal(checkRequestedDisk("vdc", listing, log), false);
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /ERROR .*Unable to parse disks from config: the backup set has no disk \[vdc\], its disks: \[sda, vdb\]/);
});
