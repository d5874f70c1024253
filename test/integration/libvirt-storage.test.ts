// Storage pools and volumes: lookups by name and target path, refresh, volume paths, errors.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Connection, LibvirtError } from "../../src/libvirt/index.js";
import * as C from "../../src/libvirt/constants.js";

const execFileP = promisify(execFile);
const URI = process.env["VNBT_LIBVIRT_URI"] ?? "qemu:///system";

function rejectsWith(p: Promise<unknown>, code: number, message?: RegExp): Promise<void> {
  return assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof LibvirtError, `expected a LibvirtError, got ${String(e)}`);
    assert.equal(e.code, code, `code ${e.code} (${e.codeName}): ${e.message}`);
    if (message) assert.match(e.message, message);
    return true;
  });
}

test("pool by name and target path, refresh, volumes by name and path", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), `vnbt-dom-${process.pid}-pool-`));
  await chmod(dir, 0o755);
  const poolName = `vnbt-${process.pid}-${randomBytes(3).toString("hex")}-pool`;
  // A transient directory pool (gone when destroyed), made with virsh: setup, not under test.
  await execFileP("virsh", ["-c", URI, "pool-create-as", poolName, "dir", "--target", dir]);
  t.after(async () => {
    await execFileP("virsh", ["-c", URI, "pool-destroy", poolName]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });
  const c = await Connection.open(URI);
  t.after(() => c.close());

  const byName = await c.storagePoolByName(poolName);
  assert.equal(byName.name, poolName);
  const byPath = await c.storagePoolByTargetPath(dir);
  assert.equal(byPath.name, poolName);
  await rejectsWith(byPath.volumeByName("disk1.qcow2"), C.VIR_ERR_NO_STORAGE_VOL, /disk1.qcow2/);

  // A file appears behind libvirt's back; refresh makes it a volume (what restore does).
  const file = join(dir, "disk1.qcow2");
  await execFileP("qemu-img", ["create", "-q", "-f", "qcow2", file, "1M"]);
  await byPath.refresh();
  const vol = await byPath.volumeByName("disk1.qcow2");
  assert.equal(vol.name, "disk1.qcow2");
  assert.equal(await vol.path(), file);
  const vol2 = await c.storageVolByPath(file);
  assert.equal(vol2.name, "disk1.qcow2");
  vol.free();
  vol2.free();
  byName.free();
  byPath.free();
  assert.throws(() => byPath.handle, /freed/);

  await rejectsWith(c.storagePoolByName("vnbt-no-such-pool"), C.VIR_ERR_NO_STORAGE_POOL, /vnbt-no-such-pool/);
  await rejectsWith(c.storagePoolByTargetPath("/nonexistent/vnbt"), C.VIR_ERR_NO_STORAGE_POOL);
  await rejectsWith(c.storageVolByPath("/nonexistent/vnbt.qcow2"), C.VIR_ERR_NO_STORAGE_VOL);
});
