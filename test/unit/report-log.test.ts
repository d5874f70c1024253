import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  currentThread,
  formatColored,
  formatPlain,
  formatTimestamp,
  LogFileError,
  LogManager,
  pyOSErrorText,
  stderrStyle,
  withThread,
  type LevelName,
  type LogRecord,
} from "../../src/report/log.js";
import { openSyslog, syslogPriority, type SyslogTransport } from "../../src/report/syslog.js";

const T = new Date(2026, 10, 26, 4, 36, 38); // local time
const clock = () => T;
const LEVELS: LevelName[] = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];

function rec(level: LevelName, message: string, extra: Partial<LogRecord> = {}): LogRecord {
  return { time: T, level, logger: "root", module: "virtnbdbackup", func: "main", thread: "main", message, ...extra };
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "cli-log-"));
}

function sink() {
  const chunks: string[] = [];
  return { chunks, write: (s: string) => void chunks.push(s), text: () => chunks.join("") };
}

describe("line format", () => {
  test("timestamp and plain line (docs/cli.md example)", () => {
    assert.equal(formatTimestamp(T), "[2026-11-26 04:36:38]");
    assert.equal(formatTimestamp(new Date(2026, 0, 2, 3, 4, 5)), "[2026-01-02 03:04:05]");
    assert.equal(
      formatPlain(rec("INFO", "Backup level: [inc]")),
      "[2026-11-26 04:36:38] INFO root virtnbdbackup - main [main]: Backup level: [inc]",
    );
    assert.equal(
      formatPlain(rec("WARNING", "x", { logger: "nbd", module: "client", func: "connect", thread: "sda" })),
      "[2026-11-26 04:36:38] WARNING nbd client - connect [sda]: x",
    );
  });

  test("coloured line: green time, level colours, extra space before the message", () => {
    const ts = "\x1b[32m[2026-11-26 04:36:38]\x1b[0m\x1b[34m ";
    assert.equal(
      formatColored(rec("INFO", "hi")),
      `${ts}INFO\x1b[0m root virtnbdbackup - main [main]:  hi\x1b[0m`,
    );
    assert.equal(
      formatColored(rec("DEBUG", "d")),
      `${ts}\x1b[36mDEBUG\x1b[0m root virtnbdbackup - main [main]: \x1b[36m d\x1b[0m`,
    );
    assert.equal(
      formatColored(rec("WARNING", "w")),
      `${ts}\x1b[33mWARNING\x1b[0m root virtnbdbackup - main [main]: \x1b[33m w\x1b[0m`,
    );
    for (const level of ["ERROR", "CRITICAL"] as const) {
      assert.equal(
        formatColored(rec(level, "e")),
        `${ts}\x1b[31m${level}\x1b[0m root virtnbdbackup - main [main]: \x1b[31m e\x1b[0m`,
      );
    }
    assert.equal(
      formatColored(rec("ERROR", "e"), false),
      "[2026-11-26 04:36:38] ERROR root virtnbdbackup - main [main]:  e",
    );
  });

  test("stderr style: --nocolor, NO_COLOR, FORCE_COLOR (colorlog rules)", () => {
    assert.equal(stderrStyle(false, {}), "color");
    assert.equal(stderrStyle(false, {}, false), "nocolor-env", "a file, pipe or journald: no escapes");
    assert.equal(stderrStyle(false, { FORCE_COLOR: "1" }, false), "color", "FORCE_COLOR forces them");
    assert.equal(stderrStyle(true, {}, true), "plain");
    assert.equal(stderrStyle(true, {}), "plain");
    assert.equal(stderrStyle(true, { FORCE_COLOR: "1" }), "plain");
    assert.equal(stderrStyle(false, { NO_COLOR: "1" }), "nocolor-env");
    assert.equal(stderrStyle(false, { NO_COLOR: "" }), "nocolor-env"); // presence counts
    assert.equal(stderrStyle(false, { NO_COLOR: "1", FORCE_COLOR: "" }), "color");
  });

  test("coloured and NO_COLOR output equal upstream's colorlog formatter", (t) => {
    const py = "/usr/bin/python3";
    const probe = existsSync(py) ? spawnSync(py, ["-c", "import colorlog"]) : null;
    if (!probe || probe.status !== 0) {
      t.skip("python3 with colorlog not available");
      return;
    }
    const script = String.raw`
import json, logging, os, sys, colorlog
fmt = ("%(green)s%(asctime)s%(reset)s%(blue)s %(log_color)s%(levelname)s%(reset)s "
       "%(name)s %(module)s - %(funcName)s [%(threadName)s]: %(log_color)s %(message)s")
f = colorlog.ColoredFormatter(fmt, datefmt="[%Y-%m-%d %H:%M:%S]",
    log_colors={"WARNING": "yellow", "ERROR": "red", "DEBUG": "cyan", "CRITICAL": "red"})
out = []
for level, msg in json.load(sys.stdin)["records"]:
    r = logging.makeLogRecord(dict(name="root", levelname=level, levelno=getattr(logging, level),
        msg=msg, args=None, module="virtnbdbackup", funcName="main", threadName="main",
        created=float(sys.argv[1])))
    out.append(f.format(r))
print(json.dumps(out))
`;
    const records = LEVELS.map((l) => [l, `message with %s and \x1b[0m inside ${l}`]);
    const run = (env: NodeJS.ProcessEnv) => {
      const r = spawnSync(py, ["-c", script, String(T.getTime() / 1000)], {
        input: JSON.stringify({ records }),
        encoding: "utf8",
        env: { PATH: "/usr/bin:/bin", ...(process.env.TZ ? { TZ: process.env.TZ } : {}), ...env },
      });
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout) as string[];
    };
    const colored = run({});
    const blank = run({ NO_COLOR: "1" });
    records.forEach(([level, msg], i) => {
      assert.equal(formatColored(rec(level as LevelName, msg!)), colored[i]);
      assert.equal(formatColored(rec(level as LevelName, msg!), false), blank[i]);
    });
  });
});

describe("LogManager", () => {
  test("file gets the plain format, appended; stderr coloured; INFO level by default", () => {
    const dir = tempDir();
    try {
      const file = join(dir, "backup.log");
      writeFileSync(file, "earlier line\n");
      const err = Object.assign(sink(), { isTTY: true }); // a terminal: colours
      const m = new LogManager();
      m.configure({ prog: "virtnbdbackup", logFile: file, stderr: err, clock, env: {} });
      const log = m.getLogger();
      log.debug("not shown");
      log.info("Backup level: [inc]");
      assert.equal(
        readFileSync(file, "utf8"),
        "earlier line\n[2026-11-26 04:36:38] INFO root virtnbdbackup - main [main]: Backup level: [inc]\n",
      );
      assert.equal(err.chunks.length, 1);
      assert.equal(err.text(), formatColored(rec("INFO", "Backup level: [inc]")) + "\n");
      assert.equal(m.logFile, file);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("-v adds DEBUG to file and stderr", () => {
    const dir = tempDir();
    try {
      const file = join(dir, "r.log");
      const err = sink();
      const m = new LogManager();
      m.configure({ prog: "virtnbdrestore", logFile: file, stderr: err, clock, verbose: true, nocolor: true });
      m.getLogger().debug("dbg");
      const line = "[2026-11-26 04:36:38] DEBUG root virtnbdrestore - main [main]: dbg\n";
      assert.equal(readFileSync(file, "utf8"), line);
      assert.equal(err.text(), line); // --nocolor: same plain line
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("NO_COLOR keeps the coloured layout without escapes", () => {
    const err = sink();
    const m = new LogManager();
    m.configure({ prog: "virtnbdmap", stderr: err, clock, env: { NO_COLOR: "1" } });
    m.getLogger().info("x");
    assert.equal(err.text(), "[2026-11-26 04:36:38] INFO root virtnbdmap - main [main]:  x\n");
  });

  test("--quiet: nothing on stderr, file and counters still work", () => {
    const dir = tempDir();
    try {
      const file = join(dir, "q.log");
      const err = sink();
      const m = new LogManager();
      m.configure({ prog: "virtnbdbackup", logFile: file, stderr: err, clock, quiet: true });
      const log = m.getLogger();
      log.warning("w");
      log.error("e");
      assert.equal(err.chunks.length, 0);
      assert.equal(readFileSync(file, "utf8").split("\n").length, 3);
      assert.deepEqual(m.counts, { warnings: 1, errors: 1 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("counters: WARNING for --strict, ERROR/CRITICAL/fatal for exit 1", () => {
    const m = new LogManager();
    m.configure({ prog: "virtnbdbackup", stderr: sink(), clock });
    const log = m.getLogger();
    log.debug("d");
    log.info("i");
    assert.deepEqual(m.counts, { warnings: 0, errors: 0 });
    log.warning("w1");
    log.child({ thread: "sda" }).warning("w2");
    log.error("e");
    log.critical("c");
    log.fatal("f");
    log.log("ERROR", new Error("boom"));
    assert.deepEqual(m.counts, { warnings: 2, errors: 4 });
  });

  test("child loggers carry LOGGER/MODULE/FUNCTION/THREAD", () => {
    const err = sink();
    const m = new LogManager();
    m.configure({ prog: "virtnbdbackup", stderr: err, clock, nocolor: true });
    const log = m.getLogger();
    const disk = log.child({ thread: "sda", module: "disktarget" });
    disk.info("a");
    disk.child({ logger: "nbd", func: "connect" }).info("b");
    log.error(new Error("err message"));
    assert.deepEqual(err.text().split("\n"), [
      "[2026-11-26 04:36:38] INFO root disktarget - main [sda]: a",
      "[2026-11-26 04:36:38] INFO nbd disktarget - connect [sda]: b",
      "[2026-11-26 04:36:38] ERROR root virtnbdbackup - main [main]: err message",
      "",
    ]);
  });

  test("withThread names the thread across awaits; explicit thread wins", async () => {
    const err = sink();
    const m = new LogManager();
    m.configure({ prog: "virtnbdbackup", stderr: err, clock, nocolor: true });
    const log = m.getLogger({ logger: "lib", module: "common" });
    assert.equal(currentThread(), "main");
    await Promise.all(
      ["sda", "vdb"].map((disk) =>
        withThread(disk, async () => {
          await new Promise((r) => setTimeout(r, disk === "sda" ? 5 : 1));
          log.info(`in ${disk}`);
          log.child({ thread: "other" }).info("explicit");
        }),
      ),
    );
    log.info("after");
    const lines = err.text().trim().split("\n");
    assert.ok(lines.includes("[2026-11-26 04:36:38] INFO lib common - main [sda]: in sda"));
    assert.ok(lines.includes("[2026-11-26 04:36:38] INFO lib common - main [vdb]: in vdb"));
    assert.equal(lines.filter((l) => l.includes("[other]: explicit")).length, 2);
    assert.equal(lines.at(-1), "[2026-11-26 04:36:38] INFO lib common - main [main]: after");
  });

  test("setConsole routes stderr lines (progress bars print above themselves)", () => {
    const err = sink();
    const consoleSink = sink();
    const m = new LogManager();
    m.configure({ prog: "virtnbdbackup", stderr: err, clock, nocolor: true });
    m.setConsole(consoleSink);
    m.getLogger().info("above");
    m.setConsole(null);
    m.getLogger().info("direct");
    assert.match(consoleSink.text(), /: above\n$/);
    assert.match(err.text(), /: direct\n$/);
    assert.ok(!err.text().includes("above"));
  });

  test("log file that cannot be opened: LogFileError with Python's wording", () => {
    const m = new LogManager();
    assert.throws(
      () => m.configure({ prog: "virtnbdbackup", logFile: "/nonexistent-dir/x/backup.log", stderr: sink() }),
      (e: unknown) =>
        e instanceof LogFileError &&
        e.message ===
          "Failed to open logfile: [[Errno 2] No such file or directory: '/nonexistent-dir/x/backup.log'].",
    );
    const dir = tempDir();
    try {
      assert.throws(
        () => m.configure({ prog: "virtnbdbackup", logFile: dir, stderr: sink() }),
        (e: unknown) => e instanceof LogFileError && e.message.includes(`[Errno 21] Is a directory: '${dir}'`),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const enoent = Object.assign(new Error("x"), { errno: -2, code: "ENOENT" });
    assert.equal(pyOSErrorText(enoent, "/a"), "[Errno 2] No such file or directory: '/a'");
  });

  test("before configure(): WARNING and above go to stderr as bare messages, and count", () => {
    const err = sink();
    const m = new LogManager();
    // stderr can only be injected through configure(); use setConsole instead
    m.setConsole(err);
    const log = m.getLogger();
    log.info("dropped");
    log.error("Can't open output file: [x]");
    assert.equal(err.text(), "Can't open output file: [x]\n");
    assert.equal(m.counts.errors, 1);
  });

  test("lines logged right before process.exit() are in the file", async () => {
    const dir = tempDir();
    try {
      const file = join(dir, "exit.log");
      const logModule = fileURLToPath(new URL("../../src/report/log.ts", import.meta.url));
      const code = `
        import { LogManager } from ${JSON.stringify(logModule)};
        const m = new LogManager();
        m.configure({ prog: "virtnbdbackup", logFile: ${JSON.stringify(file)}, quiet: true });
        const log = m.getLogger();
        for (let i = 0; i < 1000; i++) log.info("line " + i);
        process.exit(3);
      `;
      const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code], {
        stdio: "ignore",
      });
      const status = await new Promise<number | null>((r) => child.on("close", r));
      assert.equal(status, 3);
      const lines = readFileSync(file, "utf8").trimEnd().split("\n");
      assert.equal(lines.length, 1000);
      assert.match(lines[999]!, /INFO root virtnbdbackup - main \[main\]: line 999$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("syslog", () => {
  test("priorities: facility user, severities as Python's SysLogHandler", () => {
    assert.deepEqual(
      LEVELS.map((l) => syslogPriority(l)),
      [15, 14, 12, 11, 10],
    );
  });

  test("records go to the syslog transport in the plain format", async () => {
    const sent: Array<[LevelName, string]> = [];
    let closed = false;
    const transport: SyslogTransport = {
      send: (level, line) => void sent.push([level, line]),
      close: async () => {
        closed = true;
      },
    };
    const m = new LogManager();
    m.configure({ prog: "virtnbdbackup", stderr: sink(), clock, syslog: true, syslogTransport: transport });
    m.getLogger().warning("w");
    m.getLogger().debug("not at INFO level");
    await m.close();
    assert.deepEqual(sent, [["WARNING", "[2026-11-26 04:36:38] WARNING root virtnbdbackup - main [main]: w"]]);
    assert.ok(closed);
  });

  test("missing socket: a WARNING, logging goes on", () => {
    assert.throws(() => openSyslog({ tag: "t", socketPath: "/nonexistent/log" }), /Unable to log to syslog socket/);
    const err = sink();
    const m = new LogManager();
    // /dev/log may exist on a developer machine: only check when it does not
    if (existsSync("/dev/log")) return;
    m.configure({ prog: "virtnbdbackup", stderr: err, clock, syslog: true, nocolor: true });
    assert.equal(m.counts.warnings, 1);
    assert.match(err.text(), /WARNING root virtnbdbackup - configure \[main\]: Unable to log to syslog socket \[\/dev\/log\]/);
  });

  test("datagrams reach a unix datagram socket through logger(1)", async (t) => {
    const py = "/usr/bin/python3";
    if (!existsSync(py) || spawnSync("logger", ["--version"]).status !== 0) {
      t.skip("needs logger(1) and python3");
      return;
    }
    const dir = tempDir();
    const sock = join(dir, "log");
    // a syslog daemon stand-in: python binds the datagram socket, prints what it gets
    const receiver = spawn(py, [
      "-c",
      String.raw`
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1]); s.settimeout(5)
print("ready", flush=True)
got = 0
while got < 2:
    print(repr(s.recv(65536)), flush=True); got += 1
`,
      sock,
    ]);
    let out = "";
    receiver.stdout.setEncoding("utf8");
    const ready = new Promise<void>((resolve) =>
      receiver.stdout.on("data", (d: string) => {
        out += d;
        if (out.includes("ready")) resolve();
      }),
    );
    const done = new Promise<number | null>((r) => receiver.on("close", r));
    try {
      await ready;
      const m = new LogManager();
      const transport = openSyslog({ tag: "virtnbdbackup", socketPath: sock });
      m.configure({ prog: "virtnbdbackup", stderr: sink(), clock, syslogTransport: transport });
      m.getLogger().info("hello syslog");
      m.getLogger({ thread: "sda" }).error("disk failed");
      await m.close();
      assert.equal(await done, 0);
      const lines = out.trim().split("\n").slice(1);
      assert.match(lines[0]!, /^b'<14>\w{3} [ \d]\d \d\d:\d\d:\d\d virtnbdbackup: \[2026-11-26 04:36:38\] INFO root virtnbdbackup - main \[main\]: hello syslog'$/);
      assert.match(lines[1]!, /^b'<11>.* virtnbdbackup: \[2026-11-26 04:36:38\] ERROR root virtnbdbackup - main \[sda\]: disk failed'$/);
    } finally {
      receiver.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("Logger tally", () => {
  test("a logger and its children share one tally; another logger tree counts apart", () => {
    const m = new LogManager();
    m.configure({ prog: "virtnbdbackup", quiet: true });
    const run = m.getLogger();
    const disk = run.child({ thread: "sda" });
    run.warning("w");
    disk.error("e");
    disk.critical("c");
    disk.fatal("f");
    disk.info("i");
    run.log("WARNING", "w2");
    const other = m.getLogger();
    other.error("elsewhere");
    assert.deepEqual(run.tally, { warnings: 2, errors: 3 });
    assert.equal(disk.tally, run.tally);
    assert.deepEqual(other.tally, { warnings: 0, errors: 1 });
    assert.deepEqual(m.counts, { warnings: 2, errors: 4 });
  });
});
