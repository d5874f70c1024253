import { test } from "node:test";
import assert from "node:assert/strict";
import * as C from "../../src/libvirt/constants.js";
import { LibvirtError, errorCodeName, isLibvirtError, lvCall } from "../../src/libvirt/errors.js";

test("constants have libvirt's values", () => {
  assert.equal(C.VIR_ERR_NO_DOMAIN, 42);
  assert.equal(C.VIR_ERR_AUTH_FAILED, 45);
  assert.equal(C.VIR_ERR_NO_DOMAIN_CHECKPOINT, 103);
  assert.equal(C.VIR_ERR_CHECKPOINT_INCONSISTENT, 109);
  assert.equal(C.VIR_DOMAIN_PAUSED, 3);
  assert.equal(C.VIR_DOMAIN_START_PAUSED | C.VIR_DOMAIN_START_AUTODESTROY, 3);
  assert.equal(C.VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE | C.VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE_VALIDATE, 5);
  assert.equal(C.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY, 2);
  assert.equal(C.VIR_DOMAIN_CHECKPOINT_XML_SIZE, 4);
  assert.equal(C.VIR_DOMAIN_BLOCK_JOB_TYPE_BACKUP, 5);
  assert.equal(C.VIR_DOMAIN_BACKUP_BEGIN_PRESERVE_SHUTDOWN_DOMAIN, 2);
  assert.equal(C.LIBVIRT_VERSION_PRESERVE_SHUTDOWN_DOMAIN, 11010000);
  assert.equal(C.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP, 1);
  assert.equal(C.VIR_CONNECT_CLOSE_REASON_KEEPALIVE, 2);
});

test("error code names", () => {
  assert.equal(errorCodeName(42), "VIR_ERR_NO_DOMAIN");
  assert.equal(errorCodeName(103), "VIR_ERR_NO_DOMAIN_CHECKPOINT");
  assert.equal(errorCodeName(1), "VIR_ERR_INTERNAL_ERROR");
  assert.equal(errorCodeName(0), "VIR_ERR_OK");
  assert.equal(errorCodeName(9999), "VIR_ERR_9999");
  assert.equal(new LibvirtError("m", 45).codeName, "VIR_ERR_AUTH_FAILED");
});

test("isLibvirtError matches class and codes", () => {
  const e = new LibvirtError("Domain not found", C.VIR_ERR_NO_DOMAIN, C.VIR_FROM_QEMU);
  assert.equal(isLibvirtError(e), true);
  assert.equal(isLibvirtError(e, C.VIR_ERR_NO_DOMAIN), true);
  assert.equal(isLibvirtError(e, C.VIR_ERR_AUTH_FAILED), false);
  assert.equal(isLibvirtError(e, [C.VIR_ERR_AUTH_FAILED, C.VIR_ERR_NO_DOMAIN]), true);
  assert.equal(isLibvirtError(new Error("x")), false);
  assert.equal(isLibvirtError(undefined), false);
  assert.equal(e.message, "Domain not found");
  assert.equal(e.name, "LibvirtError");
  assert.equal(e.level, C.VIR_ERR_ERROR);
});

test("lvCall turns native rejections into LibvirtError with the caller's stack", async () => {
  const native = Object.assign(new Error("operation failed: boom"), { code: 9, domain: 10, level: 2, libvirt: true });
  async function someCaller() {
    return await lvCall(Promise.reject(native));
  }
  await assert.rejects(someCaller(), (e: unknown) => {
    assert.ok(e instanceof LibvirtError);
    assert.equal(e.code, 9);
    assert.equal(e.domain, 10);
    assert.equal(e.message, "operation failed: boom");
    assert.match(e.stack ?? "", /someCaller/);
    return true;
  });
  const other = new TypeError("bad arg");
  await assert.rejects(lvCall(Promise.reject(other)), (e) => e === other);
  assert.equal(await lvCall(Promise.resolve(5)), 5);
});
