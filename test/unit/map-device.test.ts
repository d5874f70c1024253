import { test } from "node:test";
import assert from "node:assert/strict";
import { cowBlockSize } from "../../src/map/options.js";
import { connectHost, deviceErrors } from "../../src/qemu/nbd-device.js";
import { hexdump } from "../../src/map/hexdump.js";

test("cow block size: -b rounded up to a power of two ≥ 4 KiB, grown for huge disks, bad values refused", () => {
  assert.equal(cowBlockSize("4096", 2 ** 31), 4096);
  assert.equal(cowBlockSize("512", 2 ** 31), 4096);
  assert.equal(cowBlockSize("65536", 2 ** 31), 65536);
  assert.equal(cowBlockSize("100000", 2 ** 31), 131072);
  assert.equal(cowBlockSize("64k", 0), 65536);
  assert.equal(cowBlockSize("4096", 2 ** 40), 32768); // 1 TiB: at most 2^25 blocks
  for (const bad of ["", "0", "-1", "4x", "abc"]) assert.throws(() => cowBlockSize(bad, 0), RangeError, bad);
});

test("device checks and connect host follow the original's rules", () => {
  assert.deepEqual(deviceErrors("/tmp/not-a-device"), [
    "Target device [/tmp/not-a-device] seems not to be an NBD device?",
    "Target device [/tmp/not-a-device] does not exist, please load nbd module: [modprobe nbd]",
  ]);
  assert.deepEqual(deviceErrors("/dev/nbd999"), ["Target device [/dev/nbd999] does not exist, please load nbd module: [modprobe nbd]"]);
  assert.equal(connectHost("0.0.0.0"), "127.0.0.1");
  assert.equal(connectHost("::"), "[::1]");
  assert.equal(connectHost("fe80::1"), "[fe80::1]");
  assert.equal(connectHost("192.0.2.7"), "192.0.2.7");
});

test("hexdump: offset, hex in two groups, printable text", () => {
  const text = hexdump(0x10, Buffer.from("virtnbd example!\x00\x01"));
  assert.equal(
    text,
    "read offset=16 count=18\n" +
      "000000000010  76 69 72 74 6e 62 64 20  65 78 61 6d 70 6c 65 21  |virtnbd example!|\n" +
      "000000000020  00 01                                             |..|\n",
  );
});
