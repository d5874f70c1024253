/**
 * virtnbdmap as a process (bin/virtnbdmap.js over dist/, its own NBD server): the checks and exit
 * codes of docs/cli.md ("virtnbdmap checks"), signal teardown (port closed, temp directory gone,
 * exit 0), read-only mode, export name / threads (no effect) / hexdump options. Streams are synthetic.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile, rm, truncate, writeFile } from "node:fs/promises";
import net from "node:net";
import { join } from "node:path";
import { buildStream, pattern } from "../helpers/streams.js";
import { fullExtents, modelDisk } from "../helpers/map-model.js";
import { exportHash, portOpen, runMap, startMap } from "../helpers/map-run.js";
import { freePort, run } from "../helpers/nbd-servers.js";
import { tempDir } from "../helpers/tmp.js";
import { createHash } from "node:crypto";

const MiB = 1024 * 1024;
const SIZE = 8 * MiB;
const fullData = [
  { start: 0, data: Buffer.concat([Buffer.from("HEXDUMP-MARKER:"), pattern(64 * 1024 - 15, 1)]) },
  { start: 3 * MiB, data: pattern(MiB, 2) },
];
const incData = [{ start: 3 * MiB + 4096, data: pattern(8192, 3) }];

async function chain(dir: string): Promise<{ full: string; inc: string; fullHash: string; chainHash: string }> {
  const full = join(dir, "sda.full.data");
  const inc = join(dir, "sda.inc.virtnbdbackup.1.data");
  const fullExt = fullExtents(SIZE, fullData);
  await writeFile(full, await buildStream(fullExt, { virtualSize: SIZE }));
  await writeFile(
    inc,
    await buildStream(incData, { virtualSize: SIZE, meta: { incremental: true, checkpointName: "virtnbdbackup.1", parentCheckpoint: "virtnbdbackup.0" } }),
  );
  const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
  return {
    full,
    inc,
    fullHash: sha(modelDisk([{ size: SIZE, full: true, extents: fullExt }])),
    chainHash: sha(modelDisk([{ size: SIZE, full: true, extents: fullExt }, { size: SIZE, full: false, extents: incData }])),
  };
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  test(`${signal}: server stopped, temp directory removed, exit 0`, async (t) => {
    const dir = await tempDir(t);
    const c = await chain(dir);
    const m = await startMap(t, [c.full, c.inc], { logFile: join(dir, "map.log") });
    assert.equal(await exportHash(m.uri), c.chainHash);
    const tmp = m.tmpDir();
    assert.ok((await portOpen(m.port)) && existsSync(tmp));
    assert.match(m.output(), /Serving backup chain on nbd:\/\/127\.0\.0\.1:\d+\/sda/);
    const { code, output } = await m.stop(signal);
    assert.equal(code, 0, output);
    assert.match(output, new RegExp(`Received signal: \\[${signal === "SIGTERM" ? 15 : 2}\\]`));
    assert.equal(await portOpen(m.port), false, "nothing listens any more");
    assert.equal(existsSync(tmp), false, "temp directory is gone");
    const log = await readFile(join(dir, "map.log"), "utf8");
    assert.match(log, /INFO root virtnbdmap - main \[main\]: Press CTRL\+C to disconnect/);
  });
}

test("writes land in the overlay: read back through the export, the backup files unchanged, partial blocks keep the backup's bytes", async (t) => {
  const dir = await tempDir(t);
  const c = await chain(dir);
  const before = await readFile(c.full);
  const m = await startMap(t, [c.full], { args: ["-b", "64k"] });
  assert.match(m.output(), /writes into a copy-on-write overlay of \[65536\] byte blocks/);
  await run("qemu-io", ["-f", "raw", "-c", "write -P 0x77 70000 100", m.uri]);
  const r = await run("qemu-io", ["-f", "raw", "-c", "read -P 0x77 70000 100", "-c", `read -v 65536 16`, m.uri]);
  assert.doesNotMatch(r.stdout, /Pattern verification failed/);
  assert.match(r.stdout, /00010000: {2}([0-9a-f]{2} ){16}/, "the rest of the written block still reads");
  assert.equal((await m.stop()).code, 0);
  assert.ok((await readFile(c.full)).equals(before), "the backup file is unchanged");
});

test("read-only (-r), export name, threads: reads served, writes refused", async (t) => {
  const dir = await tempDir(t);
  const c = await chain(dir);
  const m = await startMap(t, [c.full], { exportName: "vdb", args: ["-r", "-t", "4"] });
  assert.match(m.uri, /\/vdb$/);
  assert.match(m.output(), /INFO .*Option -t has no effect: virtnbdmap serves the export itself, without nbdkit\./);
  assert.match(m.output(), /Started NBD server on \[127\.0\.0\.1:\d+\], read-only/);
  assert.equal(await exportHash(m.uri), c.fullHash);
  const w = await run("qemu-io", ["-f", "raw", "-c", "write -P 1 0 4096", m.uri], { allowFail: true });
  assert.match(w.stdout + w.stderr, /read.only|Operation not permitted|Permission denied/i);
  assert.equal((await m.stop()).code, 0);
});

test("-H with -v: served data hexdumped into the kept server log", async (t) => {
  const dir = await tempDir(t);
  const c = await chain(dir);
  const m = await startMap(t, [c.full], { args: ["-H", "-v"] });
  await run("qemu-io", ["-f", "raw", "-c", "read 0 4096", m.uri]);
  const { code, output } = await m.stop();
  assert.equal(code, 0);
  const kept = /Keeping server logfile: \[([^\]]+)\]/.exec(output);
  assert.ok(kept, output);
  t.after(() => rm(kept[1]!, { force: true }));
  const log = await readFile(kept[1]!, "utf8");
  assert.match(log, /000000000000  48 45 58 44 55 4d 50 2d  4d 41 52 4b 45 52 3a [0-9a-f]{2} +\|HEXDUMP-MARKER:.\|/);
});

test("checks before mapping: docs/cli.md errors, exit 1; usage errors exit 2", async (t) => {
  const dir = await tempDir(t);
  const c = await chain(dir);
  const cases: [string[], RegExp][] = [
    [["-f", c.full], /ERROR .*Target device \[\/dev\/nbd0\] does not exist, please load nbd module: \[modprobe nbd\]/],
    [["-f", c.full, "-d", join(dir, "x")], /seems not to be an NBD device\?/],
    [["--listen-only", "-f", `${c.inc},${c.full}`], /Sequence must start with a full backup/],
    [["--listen-only", "-r", "-f", `${c.full},${c.inc}`], /Device mapping with incrementals doesn't work in readonly mode/],
    [["--listen-only", "-f", join(dir, "nope.data")], /\[Errno 2\] No such file or directory/],
    [["--listen-only", "-b", "huge", "-f", c.full], /Invalid blocksize \[huge\]/],
  ];
  for (const [args, re] of cases) {
    const { code, output } = await runMap(["-L", join(dir, "map.log"), ...args]);
    assert.equal(code, 1, `${args.join(" ")}:\n${output}`);
    assert.match(output, re, args.join(" "));
    assert.doesNotMatch(output, /Press CTRL\+C/);
  }
  // misordered chain (two incs)
  const inc2 = join(dir, "sda.inc.virtnbdbackup.2.data");
  await writeFile(
    inc2,
    await buildStream([], { virtualSize: SIZE, meta: { incremental: true, checkpointName: "virtnbdbackup.2", parentCheckpoint: "virtnbdbackup.1" } }),
  );
  let r = await runMap(["-L", join(dir, "map.log"), "--listen-only", "-f", `${c.full},${inc2},${c.inc}`]);
  assert.equal(r.code, 1);
  assert.match(r.output, /not given in chain order/);
  // a truncated stream
  const broken = join(dir, "broken.full.data");
  await writeFile(broken, await readFile(c.full));
  await truncate(broken, 2 * MiB);
  r = await runMap(["-L", join(dir, "map.log"), "--listen-only", "-f", broken]);
  assert.equal(r.code, 1);
  assert.match(r.output, /Unable to read backup file: .*broken\.full\.data: at byte \d+/);
  // port in use
  const port = await freePort();
  const blocker = net.createServer().listen(port, "127.0.0.1");
  t.after(() => blocker.close());
  await new Promise((res) => blocker.once("listening", res));
  r = await runMap(["-L", join(dir, "map.log"), "--listen-only", "-p", String(port), "-f", c.full]);
  assert.equal(r.code, 1);
  assert.match(r.output, new RegExp(`ERROR .*Failed to start NBD server on \\[127\\.0\\.0\\.1:${port}\\]: \\[.*EADDRINUSE`));
  // usage error
  r = await runMap(["--listen-only"]);
  assert.equal(r.code, 2);
  assert.match(r.output, /error: the following arguments are required: -f\/--file/);
});
