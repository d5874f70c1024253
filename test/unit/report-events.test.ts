/**
 * The event stream (src/report/events.ts, src/cli/event-output.ts; docs/events.md): line framing,
 * the common fields, progress throttling, run-end totals and the last error, warning/error events
 * from log records, stderr hand-over, the options, and docs/events.schema.json.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { EventStream, EVENT_SCHEMA_VERSION } from "../../src/report/events.js";
import { ProgressThrottle } from "../../src/report/progress-throttle.js";
import { LogManager } from "../../src/report/log.js";
import { startEvents } from "../../src/cli/event-output.js";
import { runCommand } from "../../src/cli/command.js";
import { parseBackupArgs, parseMapArgs, parseRestoreArgs } from "../../src/cli/args.js";
import { compileEventSchema, eventValidator, parseEventLines, checkEvents } from "../helpers/events.js";
import { tempDir } from "../helpers/tmp.js";

/** A stream into an array of writes, with a settable monotonic clock. */
function recorded(progressIntervalMs = 500) {
  const writes: string[] = [];
  let ms = 1000;
  const events = new EventStream();
  events.open({
    tool: "virtnbdprune",
    sink: { write: (l) => writes.push(l) },
    clock: () => new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 6) + ms),
    now: () => ms,
    pid: 4242,
    progressIntervalMs,
  });
  return { events, writes, advance: (n: number) => (ms += n), parsed: () => parseEventLines(writes.join("")) };
}

test("every write is one complete JSON line with schema, event, time (UTC), tool and pid first", () => {
  const r = recorded();
  r.events.runStart({ domain: "vm", options: { keep: 3 } });
  r.advance(250);
  r.events.nbdServer({ server: "nbdkit", transport: "tcp", host: "127.0.0.1", port: 10809, exports: ["sda"], tls: false });
  for (const w of r.writes) {
    assert.ok(w.endsWith("\n") && w.indexOf("\n") === w.length - 1, JSON.stringify(w));
  }
  const [start, server] = r.parsed();
  assert.deepEqual(Object.keys(start!).slice(0, 5), ["schema", "event", "time", "tool", "pid"]);
  assert.equal(start!.schema, EVENT_SCHEMA_VERSION);
  assert.equal(start!.event, "run-start");
  assert.equal(start!.time, "2026-01-02T03:04:06.006Z");
  assert.equal(start!.tool, "virtnbdprune");
  assert.equal(start!.pid, 4242);
  assert.equal(start!.domain, "vm");
  assert.match(String(start!.version), /^\d+\.\d+\.\d+/);
  assert.equal(server!.time, "2026-01-02T03:04:06.256Z");
  assert.equal(server!.port, 10809);
});

test("progress: at most one per interval per disk, none while nothing moved, rate over the interval", () => {
  const r = recorded(500);
  const sda = r.events.disk({ disk: "sda", level: "full", target: "/b/sda.full.data", total: 10_000 });
  const sdb = r.events.disk({ disk: "sdb", total: 100 });
  sda.progress(1000); // t=0 after start: too early
  r.advance(200);
  sda.progress(1000); // 200 ms
  r.advance(300);
  sda.progress(1000); // 500 ms: due, 3000 bytes in 0.5 s
  sdb.progress(50); // sdb's own throttle: due as well
  r.advance(100);
  sda.progress(1000); // too early again
  r.advance(600);
  sda.progress(0); // due: the 1000 bytes of 100 ms ago moved since the last event (in 0.7 s)
  r.advance(600);
  sda.progress(0); // due by time, but nothing moved since the previous event: none
  const progress = r.parsed().filter((e) => e.event === "progress");
  assert.deepEqual(
    progress.map((e) => [e.disk, e.bytes, e.total, e.rate]),
    [
      ["sda", 3000, 10_000, 6000],
      ["sdb", 50, 100, 100],
      ["sda", 4000, 10_000, 1429],
    ],
  );
});

test("ProgressThrottle alone: a stall emits nothing, the first sample counts from the start", () => {
  let t = 0;
  const th = new ProgressThrottle(250, () => t);
  assert.equal(th.add(10), null);
  t = 250;
  assert.deepEqual(th.add(15), { bytes: 25, rate: 100 });
  t = 10_000;
  assert.equal(th.add(0), null);
  assert.equal(th.done, 25);
});

test("disk-done and run-end: duration, totals, the last error only for a failing run, written once", () => {
  const r = recorded();
  const sda = r.events.disk({ disk: "sda" });
  r.advance(1500);
  sda.done({ bytes: 4096, checksum: 123 });
  r.events.disk({ disk: "sdb" }).done({ bytes: 10, checksum: null });
  r.events.logRecord({ level: "WARNING", message: "careful", thread: "sda" });
  r.events.logRecord({ level: "ERROR", message: "first", thread: "main" });
  r.events.logRecord({ level: "CRITICAL", message: "last one", thread: "main" });
  r.events.logRecord({ level: "INFO", message: "not an event", thread: "main" });
  r.advance(500);
  r.events.end(1);
  r.events.end(0);
  r.events.runStart({});
  const events = r.parsed();
  assert.deepEqual(events.map((e) => e.event), ["disk-start", "disk-done", "disk-start", "disk-done", "warning", "error", "error", "run-end"]);
  assert.deepEqual([events[1]!.bytes, events[1]!.duration, events[1]!.checksum], [4096, 1.5, 123]);
  assert.deepEqual([events[5]!.level, events[6]!.level, events[6]!.message], ["ERROR", "CRITICAL", "last one"]);
  const end = events.at(-1)!;
  assert.deepEqual([end.exitCode, end.duration, end.totals, end.error], [1, 2, { bytes: 4106, disks: 2 }, "last one"]);
  assert.equal(r.events.active, false);

  const ok = recorded();
  ok.events.logRecord({ level: "ERROR", message: "logged, yet exit 0", thread: "main" });
  ok.events.end(0);
  assert.equal("error" in ok.parsed().at(-1)!, false);
});

test("a stream never opened writes nothing and its disks are no-ops", () => {
  const events = new EventStream();
  events.runStart({ domain: "x" });
  const d = events.disk({ disk: "sda" });
  d.progress(1);
  d.done({ bytes: 1, checksum: null });
  events.end(0);
  assert.equal(events.active, false);
});

function logSetup() {
  const stderr: string[] = [];
  const manager = new LogManager();
  const events = new EventStream();
  return { stderr, manager, events, deps: { events, manager, stderr: { write: (s: string) => stderr.push(s) } } };
}

test("--json: events take stderr over, log lines go; warning/error events carry the log line's message", async (t) => {
  const s = logSetup();
  const logFile = join(await tempDir(t), "run.log");
  assert.equal(startEvents("virtnbdbackup", { json: true, jsonFile: null }, { domain: "vm" }, s.deps), null);
  s.manager.configure({ prog: "virtnbdbackup", logFile, stderr: { write: (x: string) => s.stderr.push(x) } });
  const log = s.manager.getLogger();
  log.info("Backup level: [full]");
  log.warning("Raw disk [sdc] excluded by default, use option --raw to include.");
  log.child({ thread: "sda" }).error("Disk backup failed: [boom]");
  const code = await runCommand(async () => 1, [], { stdout: { write: () => 0 }, stderr: { write: () => 0 }, manager: s.manager, events: s.events });
  assert.equal(code, 1);
  const events = checkEvents(s.stderr.join(""));
  assert.deepEqual(events.map((e) => e.event), ["run-start", "warning", "error", "run-end"]);
  const fileLines = (await readFile(logFile, "utf8")).trimEnd().split("\n");
  assert.equal(fileLines.length, 3, "the log file keeps every line");
  assert.ok(fileLines[1]!.endsWith(`: ${events[1]!.message}`), fileLines[1]);
  assert.ok(fileLines[2]!.endsWith(`: ${events[2]!.message}`), fileLines[2]);
  assert.equal(events[2]!.thread, "sda");
  assert.equal(events[3]!.error, "Disk backup failed: [boom]");
});

test("--json-file: events appended to the file, stderr keeps its log lines; an unopenable file is refused", async (t) => {
  const dir = await tempDir(t);
  const s = logSetup();
  const path = join(dir, "events.jsonl");
  assert.equal(startEvents("virtnbdrestore", { json: true, jsonFile: path }, { input: "/b" }, s.deps), null);
  s.manager.configure({ prog: "virtnbdrestore", nocolor: true, stderr: { write: (x: string) => s.stderr.push(x) } });
  s.manager.getLogger().warning("No QCOW image config found");
  s.events.end(0);
  assert.match(s.stderr.join(""), /WARNING root virtnbdrestore - main \[main\]: No QCOW image config found\n$/);
  const events = checkEvents(await readFile(path, "utf8"));
  assert.deepEqual(events.map((e) => e.event), ["run-start", "warning", "run-end"]);

  const refused = logSetup();
  const bad = startEvents("virtnbdmap", { json: true, jsonFile: join(dir, "missing", "e.jsonl") }, {}, refused.deps);
  assert.match(bad ?? "", /^Unable to open the event file \[.*missing\/e\.jsonl\]: .*ENOENT/);
  assert.equal(refused.events.active, false);
});

test("without --json nothing is opened and stderr is untouched", () => {
  const s = logSetup();
  assert.equal(startEvents("virtnbdbackup", { json: false, jsonFile: null }, {}, s.deps), null);
  s.manager.getLogger().warning("still on stderr");
  assert.deepEqual(s.stderr, []);
  assert.equal(s.events.active, false);
});

test("options: --json and --json-file (implies --json) on all three commands", () => {
  const ctx = { pid: 1, user: "root", home: "/root", tmpdir: "/tmp" };
  const b = parseBackupArgs(["-d", "vm", "-o", "/b", "--json"], ctx);
  assert.deepEqual([b.json, b.jsonFile], [true, null]);
  const r = parseRestoreArgs(["-i", "/b", "-o", "verify", "--json-file=/tmp/e"], ctx);
  assert.deepEqual([r.json, r.jsonFile], [true, "/tmp/e"]);
  const m = parseMapArgs(["-f", "x.data"], ctx);
  assert.deepEqual([m.json, m.jsonFile], [false, null]);
  assert.deepEqual([parseMapArgs(["-f", "x", "--json", "--json-file", "/e"], ctx).jsonFile], ["/e"]);
});

test("the schema compiles (draft 2020-12, strict) and tells valid events from invalid ones", () => {
  const { schema } = compileEventSchema();
  assert.deepEqual(Object.keys(schema.$defs).filter((k) => !["header", "bytes", "seconds", "disk"].includes(k)), [
    "run-start", "disk-start", "progress", "disk-done", "nbd-server", "chain", "chain-removed", "warning", "error", "run-end",
  ]);
  const validate = eventValidator();
  const r = recorded(0);
  r.events.runStart({ domain: "vm", level: "full", output: "/b", options: { compress: false, worker: null } });
  r.events.nbdServer({ server: "libvirt-backup-job", transport: "unix", socket: "/var/tmp/s", exports: ["sda", "sdb"], tls: false });
  const sda = r.events.disk({ disk: "sda", level: "inc", target: "/b/sda.inc.virtnbdbackup.1.data", total: 9 });
  r.advance(1);
  sda.progress(9);
  sda.done({ bytes: 9, checksum: 4294967295 });
  r.events.logRecord({ level: "WARNING", message: "w", thread: "main" });
  r.events.logRecord({ level: "ERROR", message: "e", thread: "main" });
  r.events.chain({ location: "/b/2026-11", domain: "vm", chain: "", started: "2026-11-01T02:00:00", backups: 3, decision: "remove", reason: "no keep rule selects it", dryRun: false });
  r.events.chainRemoved({ location: "/b/2026-11", domain: null });
  r.events.end(75);
  const events = r.parsed();
  assert.equal(events.length, 10);
  for (const e of events) assert.equal(validate(e), null, JSON.stringify(e));

  const good = events[1]!;
  assert.match(validate({ ...good, extra: 1 }) ?? "", /unevaluated/);
  assert.match(validate({ ...good, transport: "tcp" }) ?? "", /host|port|socket/);
  assert.notEqual(validate({ ...events[0]!, time: "2026-01-02 03:04:05" }), null);
  assert.notEqual(validate({ ...events[0]!, schema: "2" }), null);
  assert.notEqual(validate({ ...events.at(-1)!, totals: { bytes: 1 } }), null);
  assert.notEqual(validate({ ...events[4]!, total: -1 }), null);
  assert.equal(events[7]!.event, "chain");
  assert.notEqual(validate({ ...events[7]!, decision: "maybe" }), null);
  assert.notEqual(validate({ ...events[7]!, backups: 0 }), null);
});
