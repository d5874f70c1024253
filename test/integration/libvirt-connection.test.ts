// Connections against the real libvirtd: open/close, host facts, errors, read-only denial,
// close callbacks (admin disconnect, qemu+ssh session loss), handle freeing and RSS over 10 000
// lookups, and the event loop staying responsive during slow calls.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { hostname as localHostname, tmpdir } from "node:os";
import { promisify } from "node:util";
import v8 from "node:v8";
import vm from "node:vm";
import { native } from "../../src/native/index.js";
import {
  Connection,
  LibvirtError,
  closeReasonName,
  formatVersion,
  isLibvirtError,
  localLibVersion,
} from "../../src/libvirt/index.js";
import * as C from "../../src/libvirt/constants.js";
import { testDomain } from "../helpers/domains.js";
import { startPrivateSshd } from "../helpers/libvirt-sshd.js";

const execFileP = promisify(execFile);
const URI = process.env["VNBT_LIBVIRT_URI"] ?? "qemu:///system";

async function open(t: { after(fn: () => Promise<void>): void }, uri = URI, opts = {}): Promise<Connection> {
  const c = await Connection.open(uri, opts);
  t.after(() => c.close());
  return c;
}

function rejectsWith(p: Promise<unknown>, code: number, message?: RegExp): Promise<void> {
  return assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof LibvirtError, `expected a LibvirtError, got ${String(e)}`);
    assert.equal(e.code, code, `code ${e.code} (${e.codeName}): ${e.message}`);
    if (message) assert.match(e.message, message);
    return true;
  });
}

test("opens a connection and reports host, versions and liveness", async (t) => {
  const c = await open(t);
  assert.equal(await c.hostname(), localHostname());
  assert.equal(await c.canonicalUri(), URI);
  const lib = await c.libVersion();
  assert.ok(lib >= 9000000, `libVersion ${lib}`);
  assert.equal(localLibVersion(), lib, "local and daemon library are the same install here");
  assert.match(formatVersion(lib), /^\d+\.\d+\.\d+$/);
  assert.equal(formatVersion(9000000), "9.0.0");
  assert.equal(formatVersion(11010000), "11.10.0");
  assert.ok((await c.hypervisorVersion()) >= 7000000);
  assert.equal(await c.isAlive(), true);
  assert.equal(await c.setKeepAlive(5, 3), true);
  assert.ok(Array.isArray(await c.listAllDomains()));
});

test("open errors carry libvirt's code, domain and message", async () => {
  await rejectsWith(Connection.open("bogus:///x"), C.VIR_ERR_NO_CONNECT, /no connection driver available for bogus:\/\/\/x/);
  await rejectsWith(Connection.open("qemu+foo:///system"), C.VIR_ERR_INVALID_ARG, /transport in URL not recognised/);
  await assert.rejects(Connection.open("qemu+unix:///system?socket=/nonexistent/vnbt.sock"), (e: unknown) => {
    assert.ok(isLibvirtError(e, C.VIR_ERR_SYSTEM_ERROR));
    assert.equal(e.domain, C.VIR_FROM_RPC);
    assert.match(e.message, /Failed to connect socket to '\/nonexistent\/vnbt.sock'/);
    return true;
  });
  await rejectsWith(Connection.open("qemu:///nonsense"), C.VIR_ERR_INTERNAL_ERROR, /unexpected qemu URI path/);
});

test("unknown domain: VIR_ERR_NO_DOMAIN with libvirt's message", async (t) => {
  const c = await open(t);
  await assert.rejects(c.lookupDomain("vnbt-does-not-exist"), (e: unknown) => {
    assert.ok(isLibvirtError(e, C.VIR_ERR_NO_DOMAIN));
    assert.equal(e.domain, C.VIR_FROM_QEMU);
    assert.equal(e.message, "Domain not found: no domain with matching name 'vnbt-does-not-exist'");
    assert.equal(e.codeName, "VIR_ERR_NO_DOMAIN");
    return true;
  });
  await rejectsWith(c.lookupDomainByUUID("00000000-0000-0000-0000-00000000abcd"), C.VIR_ERR_NO_DOMAIN);
});

test("libvirt's default error printing to stderr is silenced", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "vnbt-lv-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const lib = fileURLToPath(new URL("../../src/libvirt/index.ts", import.meta.url));
  const script = join(dir, "fail.mts");
  await writeFile(
    script,
    `import { Connection } from ${JSON.stringify(lib)};\n` +
      `await Connection.open("bogus:///x").catch(() => {});\n` +
      `const c = await Connection.open(${JSON.stringify(URI)});\n` +
      `await c.lookupDomain("vnbt-does-not-exist").catch(() => {});\n` +
      `await c.close();\n` +
      `console.log("done");\n`,
  );
  const root = fileURLToPath(new URL("../..", import.meta.url));
  const { stdout, stderr } = await execFileP(process.execPath, ["--import", "tsx", script], { cwd: root });
  assert.equal(stdout.trim(), "done");
  assert.equal(stderr, "");
});

test("read-only connection: reads work, writes are denied", async (t) => {
  const ro = await open(t, URI, { readOnly: true });
  assert.ok(Array.isArray(await ro.listAllDomains()));
  await rejectsWith(
    ro.defineXML("<domain type='qemu'><name>vnbt-ro</name><memory>65536</memory><os><type>hvm</type></os></domain>"),
    C.VIR_ERR_OPERATION_DENIED,
    /read only access prevents virDomainDefineXMLFlags/,
  );
});

test("virConnectOpenAuth with user and password (server asks for none: credentials unused)", async (t) => {
  const c = await open(t, URI, { user: "nobody", password: "secret" });
  assert.equal(await c.hostname(), localHostname());
  const c2 = await open(t, URI, { auth: true });
  assert.equal(await c2.isAlive(), true);
});

test("a closed connection rejects further calls; close is idempotent", async () => {
  const c = await Connection.open(URI);
  await c.close();
  await c.close();
  assert.equal(c.closed, true);
  assert.equal(await c.isAlive(), false);
  await assert.rejects(c.hostname(), /connection is closed/);
  await assert.rejects(c.lookupDomain("x"), /connection is closed/);
});

test("domains outlive an explicitly closed connection until freed", async (t) => {
  const d = await testDomain(t, { disks: [] });
  const c = await Connection.open(URI);
  const dom = await c.lookupDomain(d.name);
  await c.close();
  // libvirt keeps the connection open while the domain holds a reference.
  assert.equal((await dom.state()).state, C.VIR_DOMAIN_SHUTOFF);
  dom.free();
  assert.throws(() => dom.handle, /freed/);
  dom.free();
});

async function ourAdminClientIds(): Promise<string[]> {
  const { stdout } = await execFileP("virt-admin", ["srv-clients-list", "libvirtd"]);
  const ids = [...stdout.matchAll(/^\s*(\d+)\s+unix/gm)].map((m) => m[1]!);
  const ours: string[] = [];
  for (const id of ids) {
    const info = await execFileP("virt-admin", ["client-info", "libvirtd", id]).catch(() => null);
    if (info && new RegExp(`unix_process_id\\s*:\\s*${process.pid}\\b`).test(info.stdout)) ours.push(id);
  }
  return ours;
}

test("close callback fires when the daemon drops the client (reason eof); close() does not fire it", async (t) => {
  const before = new Set(await ourAdminClientIds());
  const c = await open(t);
  const fresh = (await ourAdminClientIds()).filter((id) => !before.has(id));
  assert.equal(fresh.length, 1, "exactly one new admin client for this connection");
  const reasons: number[] = [];
  const second: number[] = [];
  let resolveClosed!: (r: number) => void;
  const closed = new Promise<number>((r) => (resolveClosed = r));
  await c.onClose((r) => {
    reasons.push(r);
    resolveClosed(r);
  });
  const off = await c.onClose((r) => second.push(r));
  off();
  const keepAlive = setInterval(() => {}, 1000); // the callback itself does not keep the process alive
  try {
    await execFileP("virt-admin", ["client-disconnect", "libvirtd", fresh[0]!]);
    const reason = await closed;
    assert.equal(reason, C.VIR_CONNECT_CLOSE_REASON_EOF);
    assert.equal(closeReasonName(reason), "eof");
    assert.deepEqual(second, [], "removed listener not called");
    assert.equal(await c.isAlive(), false);
    await assert.rejects(c.hostname(), (e: unknown) => isLibvirtError(e) && /closed/.test(e.message));
  } finally {
    clearInterval(keepAlive);
  }

  // An explicit close unregisters first: no callback.
  const c2 = await Connection.open(URI);
  const calls: number[] = [];
  await c2.onClose((r) => calls.push(r));
  await c2.close();
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(calls, []);
  assert.deepEqual(reasons, [C.VIR_CONNECT_CLOSE_REASON_EOF]);
});

test("qemu+ssh through a private sshd: remote calls, keepalive, close callback when ssh dies", async (t) => {
  const sshd = await startPrivateSshd(t);
  if (!sshd) {
    t.skip("sshd not available");
    return;
  }
  const d = await testDomain(t, { disks: [] });
  const c = await open(t, sshd.uri("/system"));
  assert.equal(await c.hostname(), localHostname());
  assert.ok((await c.libVersion()) >= 9000000);
  assert.equal(await c.setKeepAlive(1, 3), true);
  const dom = await c.lookupDomain(d.name);
  assert.equal(dom.uuid, d.domain.uuid);
  assert.equal((await dom.state()).state, C.VIR_DOMAIN_SHUTOFF);
  const keepAlive = setInterval(() => {}, 1000);
  try {
    const closed = new Promise<number>((resolve) => void c.onClose(resolve));
    await new Promise((r) => setTimeout(r, 50)); // registration settles
    assert.ok((await sshd.killSessions()) >= 1);
    const reason = await closed;
    assert.ok(
      [C.VIR_CONNECT_CLOSE_REASON_EOF, C.VIR_CONNECT_CLOSE_REASON_ERROR].includes(reason),
      `reason ${closeReasonName(reason)}`,
    );
    await assert.rejects(dom.state(), LibvirtError);
  } finally {
    clearInterval(keepAlive);
  }
});

test("qemu+ssh keepalive: a frozen peer closes the connection with reason keepalive", async (t) => {
  const sshd = await startPrivateSshd(t);
  if (!sshd) {
    t.skip("sshd not available");
    return;
  }
  const c = await open(t, sshd.uri("/system"));
  assert.equal(await c.setKeepAlive(1, 1), true);
  const keepAlive = setInterval(() => {}, 1000);
  try {
    const closed = new Promise<number>((resolve) => void c.onClose(resolve));
    await c.hostname(); // registration settled, link healthy
    assert.ok((await sshd.signalSessions("SIGSTOP")) >= 1);
    const t0 = Date.now();
    const reason = await closed;
    assert.equal(closeReasonName(reason), "keepalive");
    assert.ok(Date.now() - t0 < 10000);
    assert.equal(await c.isAlive(), false);
  } finally {
    clearInterval(keepAlive);
    await sshd.signalSessions("SIGCONT");
  }
});

test("the event loop keeps running during slow libvirt calls", async (t) => {
  const d = await testDomain(t, { disks: [], start: true });
  let ticks = 0;
  let maxGap = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    ticks++;
  }, 10);
  try {
    const t0 = performance.now();
    await d.domain.destroy(); // ~1.5 s in libvirtd here
    await d.domain.create();
    await Promise.all(Array.from({ length: 200 }, () => d.connection.lookupDomain(d.name).then((x) => x.free())));
    const elapsed = performance.now() - t0;
    assert.ok(elapsed > 300, `calls took ${elapsed} ms: too fast to prove anything`);
    assert.ok(ticks >= (elapsed / 10) * 0.5, `only ${ticks} ticks in ${elapsed.toFixed(0)} ms`);
    assert.ok(maxGap < 150, `the loop stalled for ${maxGap.toFixed(0)} ms`);
  } finally {
    clearInterval(timer);
  }
});

test("10 000 lookups free their handles (explicitly and by GC) and RSS stays flat", async (t) => {
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as () => void;
  const settle = async () => {
    for (let i = 0; i < 3; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const d = await testDomain(t, { disks: [] });
  const c = d.connection;
  const lookups = async (n: number, free: boolean) => {
    for (let i = 0; i < n; i++) {
      const dom = await c.lookupDomain(d.name);
      if (free) dom.free();
    }
  };
  await lookups(2000, true); // warm-up: heap, libvirt caches, worker threads
  await settle();
  const handles0 = native.lvHandleCounts();
  const rss0 = process.memoryUsage().rss;

  await lookups(10000, true);
  assert.equal(native.lvHandleCounts().open, handles0.open, "explicit free drops every libvirt reference");
  await settle();
  const rssExplicit = process.memoryUsage().rss - rss0;

  await lookups(10000, false);
  await settle();
  const counts = native.lvHandleCounts();
  assert.equal(counts.open, handles0.open, "finalizers dropped the forgotten handles");
  assert.ok(counts.wrapped - handles0.wrapped < 500, `wrapped handles left: ${counts.wrapped - handles0.wrapped}`);
  const rssGc = process.memoryUsage().rss - rss0;
  const MB = 1024 * 1024;
  t.diagnostic(`RSS growth: ${(rssExplicit / MB).toFixed(2)} MiB (freed), ${(rssGc / MB).toFixed(2)} MiB (+GC'd)`);
  assert.ok(rssExplicit < 4 * MB, `RSS grew ${(rssExplicit / MB).toFixed(1)} MiB over 10 000 freed lookups`);
  assert.ok(rssGc < 4 * MB, `RSS grew ${(rssGc / MB).toFixed(1)} MiB over 20 000 lookups`);

  // The measurement can fail: keeping 10 000 domains alive is clearly visible.
  const kept = [];
  for (let i = 0; i < 10000; i++) kept.push(await c.lookupDomain(d.name));
  await settle();
  assert.equal(native.lvHandleCounts().open - handles0.open, 10000);
  const retained = process.memoryUsage().rss - rss0 - rssGc;
  t.diagnostic(`RSS growth with 10 000 retained handles: ${(retained / MB).toFixed(2)} MiB`);
  assert.ok(retained > 4 * MB, "retained handles show up in RSS");
  for (const k of kept) k.free();
  assert.equal(native.lvHandleCounts().open, handles0.open);
});
