/**
 * An emulated TPM's state (abbbi/virtnbdbackup #169) on real swtpm under TCG: saved with every
 * backup in the same run as the disks, and brought back for the restored domain: into libvirt's
 * swtpm folder of the copy's new uuid with `-D` (owned by the swtpm user; the copy starts and
 * swtpm takes the state as it is), next to the disks with `-c` alone (docs/behaviour.md, "TPM
 * state").
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { chmod, stat } from "node:fs/promises";
import { join } from "node:path";
import { Connection } from "../../src/libvirt/connection.js";
import { DomainXml } from "../../src/libvirt/domain-xml.js";
import { testDomain, MiB } from "../helpers/domains.js";
import { assertOk, fileHash, logLines, ourBackup, ourRestore } from "../helpers/our-tool.js";
import { tempDir } from "../helpers/tmp.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("TPM state: saved with the backup, restored for a defined copy (which starts with it) and next to an undefined copy's disks", async (t) => {
  if (!existsSync("/usr/bin/swtpm")) return t.skip("swtpm is not installed (scripts/setup-host.sh installs it)");
  const d = await testDomain(t, { disks: [{ size: 16 * MiB }] });
  const { stateFile } = await d.addTpm();
  await d.start();
  for (let i = 0; i < 100 && !existsSync(stateFile); i++) await sleep(100);
  assert.ok(existsSync(stateFile), `swtpm made its state at ${stateFile}`);
  const work = await tempDir(t, "vnbt-tpm-");
  await chmod(work, 0o755); // qemu (libvirt-qemu) opens the restored image when the copy starts
  const set = join(work, "set");
  const full = assertOk(await ourBackup(["-d", d.name, "-l", "full", "-o", set, "-n"]), "full");
  assert.deepEqual(logLines(full, "WARNING").filter((l) => /TPM/.test(l)), []);
  assert.match(full.stderr, /Saved TPM state \[.*tpm2-00\.permall\] to: \[.*tpm2-00\.permall\.virtnbdbackup\.0\]/);
  const saved = await fileHash(join(set, "tpm2-00.permall.virtnbdbackup.0"));
  assert.equal(saved, await fileHash(stateFile), "the state as swtpm holds it");
  await d.destroy();

  const copyName = `${d.name}-copy`;
  t.after(async () => {
    const conn = await Connection.open("qemu:///system");
    try {
      const dom = await conn.lookupDomain(copyName).catch(() => null);
      if (dom) {
        if (await dom.isActive()) await dom.destroy();
        await dom.undefine(0);
        dom.free();
      }
    } finally {
      await conn.close();
    }
  });
  const out = join(work, "copy");
  const r = assertOk(await ourRestore(["-i", set, "-o", out, "-n", "-c", "-D", "-N", copyName]), "-c -D");
  const conn = await Connection.open("qemu:///system");
  try {
    const copy = await conn.lookupDomain(copyName);
    const uuid = DomainXml.parse(await copy.xmlDesc(0)).uuid!;
    const copyState = `/var/lib/libvirt/swtpm/${uuid}/tpm2/tpm2-00.permall`;
    assert.match(r.stderr, new RegExp(`Restoring TPM state \\[tpm2-00\\.permall\\.virtnbdbackup\\.0\\] to \\[${copyState}\\]`));
    assert.equal(await fileHash(copyState), saved, "the copy's TPM state is the backed-up one");
    const owner = await stat(copyState);
    assert.notEqual(owner.uid, 0, "owned by the swtpm user, not root");
    await copy.create();
    assert.equal(await copy.isActive(), true, "the copy starts with the restored TPM");
    assert.equal(await fileHash(copyState), saved, "libvirt did not make a new TPM over it");
    await copy.destroy();
    copy.free();
  } finally {
    await conn.close();
  }

  // -c alone: no uuid yet; the state goes next to the disks under the copy's name.
  const undefinedCopy = join(work, "undefined-copy");
  const c = assertOk(await ourRestore(["-i", set, "-o", undefinedCopy, "-n", "-c"]), "-c");
  const placed = join(undefinedCopy, `restore_${d.name}_tpm2-00.permall`);
  assert.equal(await fileHash(placed), saved);
  assert.match(c.stderr, /TPM state placed in \[.*\]: copy it to \/var\/lib\/libvirt\/swtpm\/<uuid>\/tpm2\/tpm2-00\.permall/);
});
