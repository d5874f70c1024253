import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  decodeTransmissionFlags,
  describeErrno,
  encodeErrorChunk,
  encodeInfoRequest,
  encodeMetaContextRequest,
  encodeOption,
  encodeOptionReply,
  encodeRequest,
  encodeSimpleReply,
  encodeStructuredHeader,
  Errno,
  errnoName,
  readU64,
  toNbdErrno,
  writeU64,
} from "../../src/nbd/protocol.js";
import { NbdRequestError } from "../../src/nbd/errors.js";
import { formatNbdUri, parseNbdUri } from "../../src/nbd/uri.js";

describe("nbd protocol encoders", () => {
  it("encodes a request header (28 bytes, big endian)", () => {
    const b = Buffer.alloc(28);
    encodeRequest(b, 0, 0x0001, 1, 0x123456789a, 2 ** 40 + 5, 65536);
    assert.equal(
      b.toString("hex"),
      "25609513" + "0001" + "0001" + "000000123456789a" + "0000010000000005" + "00010000",
    );
  });

  it("encodes options and option replies", () => {
    assert.equal(encodeOption(8).toString("hex"), "49484156454f5054" + "00000008" + "00000000");
    assert.equal(
      encodeOption(1, Buffer.from("sda")).toString("hex"),
      "49484156454f5054" + "00000001" + "00000003" + Buffer.from("sda").toString("hex"),
    );
    assert.equal(encodeOptionReply(7, 1).toString("hex"), "0003e889045565a9" + "00000007" + "00000001" + "00000000");
  });

  it("encodes GO and meta context requests", () => {
    assert.equal(encodeInfoRequest("sda", [3]).toString("hex"), "00000003" + "736461" + "0001" + "0003");
    assert.equal(encodeInfoRequest("", []).toString("hex"), "00000000" + "0000");
    const m = encodeMetaContextRequest("vda", ["base:allocation", "qemu:dirty-bitmap:b"]);
    assert.equal(m.readUInt32BE(0), 3);
    assert.equal(m.toString("utf8", 4, 7), "vda");
    assert.equal(m.readUInt32BE(7), 2);
    assert.equal(m.readUInt32BE(11), 15);
    assert.equal(m.toString("utf8", 15, 30), "base:allocation");
    assert.equal(m.readUInt32BE(30), 19);
    assert.equal(m.length, 30 + 4 + 19);
  });

  it("encodes replies", () => {
    assert.equal(encodeSimpleReply(1, 2, 5).toString("hex"), "67446698" + "00000005" + "00000001" + "00000002");
    const h = encodeStructuredHeader(1, 2, 3, 4, 12, 12);
    assert.equal(h.length, 32);
    assert.equal(h.subarray(0, 20).toString("hex"), "668e33ef" + "0001" + "0002" + "00000003" + "00000004" + "0000000c");
    const e = encodeErrorChunk(0, 9, Errno.EIO, "boom");
    assert.equal(e.toString("hex"), "668e33ef0001800100000000000000090000000a" + "00000005" + "0004" + Buffer.from("boom").toString("hex"));
    const long = encodeErrorChunk(0, 9, Errno.EIO, "x".repeat(10000));
    assert.equal(long.readUInt16BE(24), 4096);
  });

  it("reads and writes 64-bit values as numbers", () => {
    const b = Buffer.alloc(8);
    for (const v of [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 12345, Number.MAX_SAFE_INTEGER]) {
      writeU64(b, v, 0);
      assert.equal(readU64(b, 0), v);
      assert.equal(b.readBigUInt64BE(0), BigInt(v));
    }
    b.writeBigUInt64BE(2n ** 63n, 0);
    assert.equal(readU64(b, 0), Infinity);
  });

  it("names errnos", () => {
    assert.equal(errnoName(5), "EIO");
    assert.equal(describeErrno(5), "EIO (Input/output error)");
    assert.equal(describeErrno(28), "ENOSPC (No space left on device)");
    assert.equal(errnoName(4242), "errno 4242");
    assert.equal(toNbdErrno(Object.assign(new Error("x"), { code: "EDQUOT" })), Errno.ENOSPC);
    assert.equal(toNbdErrno(Object.assign(new Error("x"), { code: "EROFS" })), Errno.EPERM);
    assert.equal(toNbdErrno(Object.assign(new Error("x"), { nbdErrno: Errno.EINVAL })), Errno.EINVAL);
    assert.equal(toNbdErrno(new Error("plain")), Errno.EIO);
    assert.equal(toNbdErrno("weird"), Errno.EIO);
  });

  it("formats request errors naming errno and export", () => {
    const e = new NbdRequestError(0, 4096, 65536, Errno.EIO, "", "sda");
    assert.equal(e.message, "NBD read at offset 4096 (65536 bytes) failed: EIO (Input/output error) [export 'sda']");
    assert.equal(e.code, "EIO");
    const f = new NbdRequestError(3, 0, 0, Errno.ENOSPC, "disk full");
    assert.equal(f.message, "NBD flush failed: ENOSPC (No space left on device): disk full");
  });

  it("decodes transmission flags", () => {
    const f = decodeTransmissionFlags(1 | 2 | 4 | 8 | 0x100 | 0x400);
    assert.equal(f.readOnly, true);
    assert.equal(f.canFlush, true);
    assert.equal(f.canFua, true);
    assert.equal(f.canMultiConn, true);
    assert.equal(f.canCache, true);
    assert.equal(f.canTrim, false);
    assert.equal(f.canWriteZeroes, false);
  });
});

describe("nbd URIs", () => {
  it("parses unix socket URIs", () => {
    const u = parseNbdUri("nbd+unix:///sda?socket=/var/tmp/virtnbdbackup.123");
    assert.deepEqual(u.target, { kind: "unix", path: "/var/tmp/virtnbdbackup.123" });
    assert.equal(u.exportName, "sda");
    assert.equal(u.tls, false);
    const d = parseNbdUri("nbd+unix:///?socket=/tmp/a%20b+c");
    assert.equal(d.exportName, "");
    assert.deepEqual(d.target, { kind: "unix", path: "/tmp/a b+c" });
    assert.equal(parseNbdUri("nbds+unix:///x?socket=/s&tls-certificates=/etc/pki").query["tls-certificates"], "/etc/pki");
  });

  it("parses TCP URIs with defaults and IPv6", () => {
    assert.deepEqual(parseNbdUri("nbd://host.example:10810/vda").target, { kind: "tcp", host: "host.example", port: 10810 });
    assert.deepEqual(parseNbdUri("nbd://10.0.0.1/vda").target, { kind: "tcp", host: "10.0.0.1", port: 10809 });
    const v6 = parseNbdUri("nbds://[fe80::1]:10809/sd%2Fa");
    assert.deepEqual(v6.target, { kind: "tcp", host: "fe80::1", port: 10809 });
    assert.equal(v6.tls, true);
    assert.equal(v6.exportName, "sd/a");
  });

  it("rejects malformed URIs", () => {
    assert.throws(() => parseNbdUri("http://x/y"), /Invalid NBD URI/);
    assert.throws(() => parseNbdUri("nbd+unix:///sda"), /socket/);
    assert.throws(() => parseNbdUri("nbd://h:99999/x"), /port/);
    assert.throws(() => parseNbdUri("nbd+unix://host/x?socket=/s"), /no host/);
  });

  it("formats URIs like upstream logs them and round-trips", () => {
    assert.equal(formatNbdUri({ kind: "unix", path: "/var/tmp/s" }, "sda"), "nbd+unix:///sda?socket=/var/tmp/s");
    assert.equal(formatNbdUri({ kind: "tcp", host: "::1", port: 10809 }, "sda", true), "nbds://[::1]:10809/sda");
    for (const uri of ["nbd://h:1/a", "nbds://[::1]:2/b", "nbd+unix:///c?socket=/x"]) {
      const u = parseNbdUri(uri);
      assert.equal(formatNbdUri(u.target, u.exportName, u.tls), uri);
    }
  });
});
