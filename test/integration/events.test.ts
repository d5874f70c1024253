/**
 * `--json` / `--json-file` of real runs (docs/events.md): a backup (full, then inc) of a running
 * domain, an offline copy, a restore, a verify and a virtnbdmap mapping write event streams whose every line
 * validates against docs/events.schema.json; the facts in them match the run (files, `.chksum`,
 * the job's socket, nbdkit's port, totals). Failing runs end with `run-end`, exit code 1 and the
 * text of the last ERROR log line.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { testDomain } from "../helpers/domains.js";
import { assertOk, ensureBuilt, logLines, ourBackup, ourRestore, type ToolResult } from "../helpers/our-tool.js";
import { startMap, exportHash } from "../helpers/map-run.js";
import { tempDir } from "../helpers/tmp.js";
import { checkEvents, eventsNamed, type EventRecord } from "../helpers/events.js";

/** The message of a `--nocolor` log line. */
const messageOf = (line: string): string => line.replace(/^\[[^\]]+\] [A-Z]+ \S+ \S+ - \S+ \[[^\]]*\]: /, "");

/** Events on stderr (`--json`): nothing else may be there (execa strips the last newline). */
function stderrEvents(r: ToolResult): EventRecord[] {
  return checkEvents(r.stderr + "\n");
}

/** Each disk's disk-done checksum is the number its `.chksum` file holds. */
async function assertChecksums(dir: string, events: EventRecord[]): Promise<void> {
  const starts = new Map(eventsNamed(events, "disk-start").map((e) => [e.disk as string, e]));
  for (const done of eventsNamed(events, "disk-done")) {
    const target = starts.get(done.disk as string)!.target as string;
    assert.ok(target.startsWith(dir + "/"), target);
    assert.equal(done.checksum, Number((await readFile(`${target}.chksum`, "utf8")).trim()), target);
    assert.equal(done.bytes, starts.get(done.disk as string)!.total);
  }
}

test("backup full + inc, restore, verify and map: every event valid, facts as the run had them", async (t) => {
  ensureBuilt();
  const d = await testDomain(t, { disks: [{}, {}], start: true });
  const work = await tempDir(t, "vnbt-events-");
  const set = join(work, "set");

  const full = stderrEvents(assertOk(await ourBackup(["-d", d.name, "-l", "full", "-o", set, "--json"]), "full --json"));
  assert.deepEqual([full[0]!.tool, full[0]!.domain, full[0]!.level, full[0]!.output], ["virtnbdbackup", d.name, "full", set]);
  const [server] = eventsNamed(full, "nbd-server");
  assert.deepEqual([server!.server, server!.transport, server!.socket, server!.exports], ["libvirt-backup-job", "unix", `/var/tmp/virtnbdbackup.${full[0]!.pid}`, ["sda", "sdb"]]);
  assert.deepEqual(eventsNamed(full, "disk-start").map((e) => [e.disk, e.level, e.target]).sort(), [
    ["sda", "full", join(set, "sda.full.data")],
    ["sdb", "full", join(set, "sdb.full.data")],
  ]);
  await assertChecksums(set, full);
  const fullEnd = full.at(-1)!;
  assert.equal(fullEnd.exitCode, 0);
  assert.equal("error" in fullEnd, false);
  const fullBytes = eventsNamed(full, "disk-done").reduce((a, e) => a + (e.bytes as number), 0);
  assert.deepEqual(fullEnd.totals, { bytes: fullBytes, disks: 2 });
  assert.ok(fullBytes > 0);
  // The human log is still written to the set's log file.
  assert.ok(full.every((e) => e.pid === full[0]!.pid));

  await d.writePattern("sda", 1 << 20, 65536, 0x5a);
  const incPath = join(work, "inc-events.jsonl");
  const incRun = assertOk(await ourBackup(["-d", d.name, "-l", "inc", "-o", set, "--json-file", incPath]), "inc --json-file");
  assert.match(incRun.stderr, /INFO .*Backup level: \[inc\]/, "stderr keeps the log lines with --json-file");
  const inc = checkEvents(await readFile(incPath, "utf8"));
  assert.deepEqual(eventsNamed(inc, "disk-start").map((e) => e.level), ["inc", "inc"]);
  await assertChecksums(set, inc);
  assert.equal(inc.at(-1)!.exitCode, 0);

  // verify: one disk-start/disk-done per data file, the checksum computed.
  const verify = stderrEvents(assertOk(await ourRestore(["-i", set, "-o", "verify", "--json"]), "verify --json"));
  assert.equal(verify[0]!.action, "verify");
  const verified = eventsNamed(verify, "disk-done");
  assert.equal(verified.length, 4);
  const perFile = verify.filter((e) => e.event === "disk-start" || e.event === "disk-done");
  for (let i = 0; i < perFile.length; i += 2) {
    const [e, done] = [perFile[i]!, perFile[i + 1]!];
    assert.deepEqual([e.event, done.event, done.disk], ["disk-start", "disk-done", e.disk]);
    const file = (e.source as string[])[0]!;
    assert.equal(done.checksum, Number((await readFile(`${file}.chksum`, "utf8")).trim()), file);
    assert.equal(done.bytes, (await stat(file)).size);
  }
  assert.deepEqual(verify.at(-1)!.totals, { bytes: verified.reduce((a, e) => a + (e.bytes as number), 0), disks: 4 });

  // restore: each disk's chain into its image.
  const out = join(work, "restored");
  const restore = stderrEvents(assertOk(await ourRestore(["-i", set, "-o", out, "--json"]), "restore --json"));
  assert.deepEqual([restore[0]!.tool, restore[0]!.action, restore[0]!.output], ["virtnbdrestore", "restore", out]);
  const rstarts = eventsNamed(restore, "disk-start");
  assert.deepEqual(rstarts.map((e) => e.disk).sort(), ["sda", "sdb"]);
  for (const e of rstarts) {
    assert.equal((e.source as string[]).length, 2, "full + inc");
    assert.ok((await stat(e.target as string)).isFile(), String(e.target));
  }
  assert.deepEqual(restore.at(-1)!.totals, { bytes: eventsNamed(restore, "disk-done").reduce((a, e) => a + (e.bytes as number), 0), disks: 2 });

  // map: its server's endpoint, run-end 0 after SIGTERM.
  const mapPath = join(work, "map-events.jsonl");
  const m = await startMap(t, [join(set, "sda.full.data"), join(set, "sda.inc.virtnbdbackup.1.data")], { args: ["--json-file", mapPath], logFile: join(work, "map.log") });
  assert.equal(await exportHash(m.uri), (await d.diskHashes())["sda"]);
  assert.equal((await m.stop("SIGTERM")).code, 0);
  const map = checkEvents(await readFile(mapPath, "utf8"));
  assert.equal(map[0]!.tool, "virtnbdmap");
  const [mapServer] = eventsNamed(map, "nbd-server");
  assert.deepEqual([mapServer!.server, mapServer!.transport, mapServer!.host, mapServer!.port, mapServer!.exports], ["virtnbdmap", "tcp", "127.0.0.1", m.port, ["sda"]]);
  assert.equal(map.at(-1)!.exitCode, 0);

  // Shut off: a copy through one qemu-nbd per disk, each announced with its disk and socket.
  await d.destroy();
  const offline = stderrEvents(assertOk(await ourBackup(["-d", d.name, "-l", "copy", "-o", join(work, "offline"), "--json", "-w", "1"]), "offline copy --json"));
  const socket = `/var/tmp/virtnbdbackup.${offline[0]!.pid}`;
  assert.deepEqual(
    eventsNamed(offline, "nbd-server").map((e) => [e.server, e.transport, e.socket, e.disk, e.exports]),
    [
      ["qemu-nbd", "unix", `${socket}.sda`, "sda", ["sda"]],
      ["qemu-nbd", "unix", `${socket}.sdb`, "sdb", ["sdb"]],
    ],
  );
  await assertChecksums(join(work, "offline"), offline);
});

test("failing runs: run-end last, exit code 1, the last ERROR line's text", async (t) => {
  ensureBuilt();
  const work = await tempDir(t, "vnbt-events-fail-");

  // Unknown domain, events into a file: stderr's ERROR lines are the human side of the same run.
  const path = join(work, "unknown.jsonl");
  const unknown = await ourBackup(["-d", "vnbt-no-such-domain", "-l", "full", "-o", join(work, "x"), "--json-file", path]);
  assert.equal(unknown.exitCode, 1, unknown.all);
  const errors = logLines(unknown, "ERROR");
  assert.ok(errors.length > 0, unknown.stderr);
  const events = checkEvents(await readFile(path, "utf8"));
  const end = events.at(-1)!;
  assert.equal(end.exitCode, 1);
  assert.equal(end.error, messageOf(errors.at(-1)!));
  assert.deepEqual(eventsNamed(events, "error").map((e) => e.message), errors.map(messageOf));

  // A target that already holds a full, events on stderr: the same text as without --json.
  const d = await testDomain(t, { start: true });
  const set = join(work, "set");
  assertOk(await ourBackup(["-d", d.name, "-l", "full", "-o", set]), "first full");
  const plain = await ourBackup(["-d", d.name, "-l", "full", "-o", set]);
  const json = await ourBackup(["-d", d.name, "-l", "full", "-o", set, "--json"]);
  assert.equal(plain.exitCode, 1, plain.all);
  assert.equal(json.exitCode, 1, json.all);
  const failed = stderrEvents(json);
  assert.equal(failed.at(-1)!.exitCode, 1);
  assert.equal(failed.at(-1)!.error, messageOf(logLines(plain, "ERROR").at(-1)!));

  // virtnbdrestore of a missing set.
  const r = await ourRestore(["-i", join(work, "nothing"), "-o", join(work, "out"), "--json"]);
  assert.equal(r.exitCode, 1);
  const rend = stderrEvents(r).at(-1)!;
  assert.equal(rend.exitCode, 1);
  assert.match(String(rend.error), /nothing/);
});
