/**
 * virtnbdmap serving reads (bin/virtnbdmap.js --listen-only, its own NBD server): an lz4 chain reads
 * like the same chain uncompressed, through the decoded-frame cache; SIGINT while a client is
 * connected warns and waits for a second signal or the client to leave.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { NbdClient } from "../../src/nbd/index.js";
import { chainSpecs, writeChain } from "../helpers/map-model.js";
import { startMap, type MapProcess } from "../helpers/map-run.js";
import { tempDir } from "../helpers/tmp.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 4 * MiB;

function client(m: MapProcess): Promise<NbdClient> {
  return NbdClient.open({ target: { kind: "tcp", host: "127.0.0.1", port: m.port }, exportName: "sda" });
}

async function until(what: string, cond: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

test("an lz4 chain reads like the plain chain, block by block, from the decoded-frame cache; nothing is left in the cache directory", async (t) => {
  const cacheDir = await tempDir(t);
  const saved = process.env["XDG_CACHE_HOME"];
  process.env["XDG_CACHE_HOME"] = cacheDir;
  t.after(() => {
    if (saved === undefined) delete process.env["XDG_CACHE_HOME"];
    else process.env["XDG_CACHE_HOME"] = saved;
  });
  const specs = chainSpecs(SIZE);
  const plainFiles = await writeChain(await tempDir(t), specs);
  const lz4Files = await writeChain(await tempDir(t), specs, { compressLevel: 2, chunkSize: 128 * KiB });
  const plain = await startMap(t, plainFiles);
  const lz4 = await startMap(t, lz4Files, { args: ["--cache-size", "64M"] });
  assert.match(lz4.output(), /Decoded lz4 frames are cached on disk: up to \[67108864\] bytes/);
  assert.doesNotMatch(plain.output(), /Decoded lz4 frames/, "a plain chain needs no cache");
  assert.deepEqual(await readdir(cacheDir), [], "the scratch file is unlinked at once");

  const a = await client(plain);
  const b = await client(lz4);
  let seed = 4242;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const want = Buffer.alloc(4096);
  const got = Buffer.alloc(4096);
  const offsets = Array.from({ length: 300 }, () => rnd(SIZE / 4096) * 4096);
  for (const round of ["first touch", "warm"]) {
    for (const off of offsets) {
      await a.read(off, 4096, want);
      await b.read(off, 4096, got);
      assert.ok(got.equals(want), `${round}: block at ${off}`);
    }
  }
  // Several requests in flight (the asynchronous paths) agree too.
  const many = await Promise.all(offsets.slice(0, 32).map(async (off) => {
    const buf = Buffer.alloc(4096);
    await b.read(off, 4096, buf);
    return buf;
  }));
  for (let i = 0; i < many.length; i++) {
    await a.read(offsets[i]!, 4096, want);
    assert.ok(many[i]!.equals(want), `concurrent read at ${offsets[i]}`);
  }
  await a.disconnect();
  await b.disconnect();
  assert.equal((await lz4.stop("SIGINT")).code, 0);
  assert.equal((await plain.stop("SIGINT")).code, 0);
  assert.deepEqual(await readdir(cacheDir), []);
});

test("SIGINT with a client connected warns and waits; a second signal stops; without clients it stops at once", async (t) => {
  const files = await writeChain(await tempDir(t), chainSpecs(SIZE).slice(0, 1));
  const buf = Buffer.alloc(4096);

  // A client that stays: the first SIGINT warns, the mapping keeps serving, the second stops it.
  const m = await startMap(t, files);
  const c = await client(m);
  await c.read(0, 4096, buf);
  m.proc.kill("SIGINT");
  await until("the warning", () => /WARNING.*\[1\] NBD client connection\(s\) still open/.test(m.output()));
  assert.match(m.output(), /copy-on-write overlay and is lost/);
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(m.proc.exitCode, null, "still running after the first signal");
  await c.read(4096, 4096, buf); // still served
  const second = await m.stop("SIGINT");
  assert.equal(second.code, 0);
  assert.equal(second.output.match(/Received signal: \[2\]/g)?.length, 2);
  await c.disconnect().catch(() => undefined);

  // The client leaving after the warning is the stop as well.
  const m2 = await startMap(t, files);
  const c2 = await client(m2);
  await c2.read(0, 4096, buf);
  m2.proc.kill("SIGTERM");
  await until("the warning", () => /WARNING.*\[1\] NBD client/.test(m2.output()));
  await c2.disconnect();
  const left = await m2.wait();
  assert.equal(left.code, 0);
  assert.match(left.output, /All NBD clients disconnected/);

  // Nobody connected: the first signal stops, no warning.
  const m3 = await startMap(t, files);
  const t0 = Date.now();
  const alone = await m3.stop("SIGINT");
  assert.equal(alone.code, 0);
  assert.ok(Date.now() - t0 < 10_000);
  assert.doesNotMatch(alone.output, /WARNING/);
  assert.match(alone.output, /Removing temporary directory/);
});
