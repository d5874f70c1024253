/**
 * `virtnbdrestore --live` of a real Linux guest (test/helpers/linux-guest.ts): the guest ticks
 * into its ext4 data disk; a full backup while it runs, a clean stop, an offline inc. The live
 * restore of that chain (plain and lz4 in a directory, plain in zip archives) must show the guest's
 * first console line within seconds, while the copy is still running, the guest goes on
 * ticking through the copy, and after a clean stop the restored disk is a clean filesystem whose
 * tick log is the backed-up one plus exactly the ticks the restored guest printed; the
 * command has ended (serving process gone, socket removed, no backing left).
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { chmod, readFile, rm } from "node:fs/promises";
import { createConnection } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { execa } from "execa";
import { TEST_DOMAIN_PREFIX } from "../helpers/domains.js";
import { linuxGuest } from "../helpers/linux-guest.js";
import { assertOk, ourBackup, ourRestore, sh, startOurRestore } from "../helpers/our-tool.js";
import { tempDir } from "../helpers/tmp.js";
import { DomainXml } from "../../src/libvirt/domain-xml.js";
import { liveSocketPath } from "../../src/restore/live-server.js";

/** The serial console of a domain defined by a restored config: its socket and log file. */
function consoleOf(xml: string): { socket: string; log: string } {
  const socket = /<serial type=.unix.>\s*<source mode=.bind. path=.([^'"]+)/.exec(xml)?.[1];
  const log = /<log file=.([^'"]+)/.exec(xml)?.[1];
  assert.ok(socket && log, "the restored config keeps the serial console");
  return { socket, log };
}

async function consoleLines(log: string): Promise<string[]> {
  return (await readFile(log, "latin1").catch(() => "")).split("\n").slice(0, -1).map((l) => l.replace(/\r$/, ""));
}

async function waitForConsole(log: string, pattern: RegExp, ms = 90_000): Promise<RegExpExecArray> {
  const deadline = performance.now() + ms;
  for (;;) {
    for (const l of await consoleLines(log)) {
      const m = pattern.exec(l);
      if (m) return m;
    }
    if (performance.now() > deadline) throw new Error(`no console line ${pattern} in ${ms / 1000} s:\n${(await consoleLines(log)).slice(-15).join("\n")}`);
    await sleep(50);
  }
}

async function sendStop(socket: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const c = createConnection(socket, () => c.end("stop\n"));
    c.on("error", reject);
    c.on("close", () => resolve());
    c.resume();
  });
}

/** The tick log of a (shut off) qcow2 image's ext4, read with debugfs on a raw copy. */
async function tickLog(image: string, work: string): Promise<string[]> {
  const raw = join(work, `view-${Date.now()}.raw`);
  await sh("qemu-img", ["convert", "-q", "-O", "raw", image, raw]);
  await execa("e2fsck", ["-fn", raw]);
  const text = (await execa("debugfs", ["-R", "cat /tick.log", raw])).stdout;
  await sh("rm", ["-f", raw]);
  return text.split("\n").filter((l) => l !== "");
}

for (const variant of ["plain chain in a directory", "lz4 chain in a directory", "plain chain in zip archives"] as const) {
  test(`live restore of a real Linux guest: ${variant}`, async (t: TestContext) => {
    const zip = variant.includes("zip");
    const lz4 = variant.startsWith("lz4") ? ["-z"] : [];
    const g = await linuxGuest(t, { marker: `live ${variant}` });
    const work = await tempDir(t, "vnbt-liveg-");
    await chmod(work, 0o755);
    const set = join(work, "set");
    await g.start();
    await g.waitForLine(/^TICK 3$/);
    const full = ["-d", g.domain.name, "-l", "full", "-n", ...(zip ? ["-o", "-"] : [...lz4, "-o", set])];
    if (zip) {
      await sh("mkdir", ["-p", set]);
      assertOk(await ourBackup(full, { stdoutFile: join(set, "0-full.zip"), cwd: set }), "full");
    } else assertOk(await ourBackup(full), "full");
    await g.waitForLine(/^TICK 5$/);
    const backedUpTicks = await g.stop();
    const inc = ["-d", g.domain.name, "-l", "inc", "-n", ...(zip ? ["-o", "-"] : [...lz4, "-o", set])];
    assertOk(zip ? await ourBackup(inc, { stdoutFile: join(set, "1-inc.zip"), cwd: set }) : await ourBackup(inc), "offline inc");

    const name = `${TEST_DOMAIN_PREFIX}liveg-${zip ? "zip" : lz4.length > 0 ? "lz4" : "plain"}-${process.pid}`;
    t.after(async () => {
      await sh("virsh", ["-q", "destroy", name]).catch(() => undefined);
    });
    const out = join(work, "live");
    // The restored config logs the console to the original's file, which holds the original's MARKER.
    await rm(g.domain.consoleLog, { force: true });
    const began = performance.now();
    const p = startOurRestore(["-i", set, "-o", out, "--live", "-N", name, "-n", "--live-bandwidth", "2"]);
    const console = consoleOf(await waitForConfig(join(out, "vmconfig.xml")));
    const [, marker] = await waitForConsole(console.log, /^MARKER (.*)$/);
    const firstLine = (performance.now() - began) / 1000;
    t.diagnostic(`first console line ${firstLine.toFixed(1)} s after the command started`);
    assert.equal(marker, `live ${variant}`);
    assert.ok(existsSync(liveSocketPath(out)), "the backup is still being served: the boot did not wait for the copy");
    assert.ok(firstLine < 30, `the guest spoke ${firstLine.toFixed(1)} s after the command`);
    await waitForConsole(console.log, /^TICK 2$/);
    const r = assertOk(await p.result, "live restore");
    assert.match(r.stderr, /Live restore complete/);
    assert.equal(existsSync(liveSocketPath(out)), false);
    const ticksAfter = (await consoleLines(console.log)).filter((l) => /^TICK \d+$/.test(l)).length;
    await waitForConsole(console.log, new RegExp(`^TICK ${ticksAfter + 2}$`)); // still ticking on its own images
    await sendStop(console.socket);
    const [, last] = await waitForConsole(console.log, /^STOPPED (\d+)$/);
    await waitShutOff(name);

    const expected = join(work, "normal");
    assertOk(await ourRestore(["-i", set, "-o", expected, "-n"]), "normal restore of the same point");
    const image = g.dataDisk.path.split("/").pop()!;
    const before = await tickLog(join(expected, image), work);
    assert.equal(before.length, backedUpTicks, "the backup holds the ticks up to the clean stop");
    const liveTicks = Array.from({ length: Number(last) }, (_, i) => `tick ${i + 1}`);
    assert.deepEqual(await tickLog(join(out, image), work), [...before, ...liveTicks], "the restored disk: the backup's ticks, then exactly the restored guest's");
  });
}

/** The restored config appears before the domain starts. */
async function waitForConfig(path: string): Promise<string> {
  for (let i = 0; i < 600; i++) {
    const xml = await readFile(path, "utf8").catch(() => null);
    if (xml) {
      DomainXml.parse(xml);
      return xml;
    }
    await sleep(50);
  }
  throw new Error(`no ${path}`);
}

async function waitShutOff(name: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const state = await sh("virsh", ["domstate", name]).catch(() => "shut off");
    if (!/running/.test(state)) return;
    await sleep(100);
  }
  throw new Error(`${name} still runs`);
}
