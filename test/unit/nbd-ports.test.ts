/** -P port ranges (src/connect/nbd-ports.ts): parsing, the run's pool, the retry on "Address already in use". */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { AUTO_NBD_PORTS, formatNbdPorts, isPortInUse, NbdPortPool, NbdPortsError, onFreePort, parseNbdPorts } from "../../src/connect/nbd-ports.js";

const BUSY = "internal error: unable to execute QEMU command 'nbd-server-start': Failed to find an available port: Address already in use";

function recordingLog() {
  const lines: string[] = [];
  return { lines, info: (m: string) => lines.push(m) };
}

describe("parseNbdPorts", () => {
  test("N, N-M and auto", () => {
    assert.deepEqual(parseNbdPorts("10809"), { first: 10809, last: 10809, range: false });
    assert.deepEqual(parseNbdPorts(" 1 "), { first: 1, last: 1, range: false });
    assert.deepEqual(parseNbdPorts("65535"), { first: 65535, last: 65535, range: false });
    assert.deepEqual(parseNbdPorts("10809-10819"), { first: 10809, last: 10819, range: true });
    assert.deepEqual(parseNbdPorts("auto"), AUTO_NBD_PORTS);
    assert.equal(formatNbdPorts(parseNbdPorts("auto")), "10809-10909");
    assert.equal(formatNbdPorts(parseNbdPorts("7")), "7");
  });

  test("bad values throw NbdPortsError with one line", () => {
    for (const bad of ["", "auto ", "AUTO", "0", "70000", "1-0", "1-2-3", "a-b", "1e3", "0x10", "-5"]) {
      if (bad === "auto ") {
        assert.deepEqual(parseNbdPorts(bad), AUTO_NBD_PORTS, "surrounding blanks are ignored, as by int()");
        continue;
      }
      assert.throws(() => parseNbdPorts(bad), (e: unknown) => e instanceof NbdPortsError && !e.message.includes("\n") && e.message.includes(`'${bad}'`), bad);
    }
  });
});

describe("NbdPortPool", () => {
  test("a single port: exactly N + index, for every caller", () => {
    const pool = new NbdPortPool(parseNbdPorts("10809"));
    assert.equal(pool.claim(0), 10809);
    assert.equal(pool.claim(0), 10809);
    assert.equal(pool.claim(2), 10811);
  });

  test("a range: the lowest port not held and not busy; released ports come back, busy ones do not", () => {
    const pool = new NbdPortPool(parseNbdPorts("100-102"));
    assert.equal(pool.claim(0), 100);
    assert.equal(pool.claim(5), 101, "the index does not matter in a range");
    pool.markBusy(100);
    pool.release(101);
    assert.equal(pool.claim(0), 101);
    assert.equal(pool.claim(0), 102);
    assert.equal(pool.claim(0), null);
  });
});

describe("onFreePort", () => {
  test("moves on while the hypervisor reports the port in use, and logs the port it got", async () => {
    const pool = new NbdPortPool(parseNbdPorts("200-205"));
    const tried: number[] = [];
    const log = recordingLog();
    const r = await onFreePort(pool, 0, "hv1", log, async (port) => {
      tried.push(port);
      if (port < 202) throw new Error(BUSY);
      return `server on ${port}`;
    });
    assert.deepEqual(tried, [200, 201, 202]);
    assert.deepEqual(r, { value: "server on 202", port: 202 });
    assert.deepEqual(log.lines, [
      "NBD port [200] is in use on [hv1], trying the next port of [200-205].",
      "NBD port [201] is in use on [hv1], trying the next port of [200-205].",
      "Using NBD port [202] of [200-205] on [hv1].",
    ]);
    // A second server of the run starts after the ports found busy and the one held.
    assert.equal((await onFreePort(pool, 1, "hv1", log, async (port) => port)).port, 203);
  });

  test("a single port fails as it did: no second port, no extra log line", async () => {
    const pool = new NbdPortPool(parseNbdPorts("300"));
    const log = recordingLog();
    const tried: number[] = [];
    await assert.rejects(
      onFreePort(pool, 1, "hv1", log, async (port) => {
        tried.push(port);
        throw new Error(BUSY);
      }),
      (e: unknown) => (e as Error).message === BUSY,
    );
    assert.deepEqual(tried, [301]);
    assert.deepEqual(log.lines, []);
  });

  test("other errors are not retried; a used-up range names itself and the last error", async () => {
    const pool = new NbdPortPool(parseNbdPorts("400-401"));
    await assert.rejects(
      onFreePort(pool, 0, "hv1", recordingLog(), async () => {
        throw new Error("Permission denied");
      }),
      /^Error: Permission denied$/,
    );
    await assert.rejects(
      onFreePort(pool, 0, "hv1", recordingLog(), async () => {
        throw new Error(BUSY);
      }),
      (e: unknown) => e instanceof NbdPortsError && /^No free NBD port in \[400-401\] on \[hv1\]: every port of the range is in use: .*Address already in use$/.test(e.message),
    );
  });

  test("isPortInUse: qemu's and qemu-nbd's bind failure", () => {
    assert.ok(isPortInUse(new Error(BUSY)));
    assert.ok(isPortInUse(new Error("qemu-nbd for [/x.qcow2] on [hv] exited (1): qemu-nbd: Failed to find an available port: Address already in use")));
    assert.ok(!isPortInUse(new Error("Connection refused")));
  });
});
