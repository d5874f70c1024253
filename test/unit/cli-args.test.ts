// Expected values and messages below were checked against upstream 2.47's own
// argparse parsers running under Debian 12's Python 3.11.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  getuser,
  handleUsageExit,
  helpText,
  parseBackupArgs,
  parseMapArgs,
  parsePruneArgs,
  parseRestoreArgs,
  usageText,
  UsageExit,
  FULL_VERSION,
  VERSION,
  type DefaultsContext,
} from "../../src/cli/args.js";

const PACKAGE_VERSION = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;

const CTX: Partial<DefaultsContext> = { pid: 4242, user: "root", home: "/root", tmpdir: "/tmp", columns: 80 };
const B = ["-d", "vm", "-o", "/b"];

const backup = (...argv: string[]) => parseBackupArgs(argv, CTX);
const restore = (...argv: string[]) => parseRestoreArgs(argv, CTX);
const map = (...argv: string[]) => parseMapArgs(argv, CTX);

function exitOf(fn: () => unknown): UsageExit {
  try {
    fn();
  } catch (e) {
    if (e instanceof UsageExit) return e;
    throw e;
  }
  assert.fail("expected UsageExit");
}

/** The `<prog>: error: …` line of a usage error (and check code 2, usage on stderr, empty stdout). */
function usageError(fn: () => unknown): string {
  const e = exitOf(fn);
  assert.equal(e.code, 2);
  assert.equal(e.stdout, "");
  assert.match(e.stderr, /^usage: /);
  assert.ok(e.stderr.endsWith("\n"));
  const lines = e.stderr.trimEnd().split("\n");
  return lines[lines.length - 1]!;
}

describe("virtnbdbackup options", () => {
  test("defaults (upstream 2.47)", () => {
    assert.deepEqual(backup(...B), {
      given: new Set(["domain", "output"]),
      domain: "vm",
      level: "copy",
      type: "stream",
      raw: false,
      output: "/b",
      checkpointdir: null,
      chain: "",
      check: false,
      metricsFile: null,
      scratchdir: "/var/tmp",
      startDomain: false,
      pause: false,
      include: null,
      exclude: null,
      socketfile: "/var/tmp/virtnbdbackup.4242",
      noprogress: false,
      compress: false,
      worker: null,
      freezeMountpoint: null,
      strict: false,
      noSparseDetection: false,
      threshold: null,
      uri: "qemu:///system",
      user: null,
      sshUser: "root",
      sshPort: 22,
      sshPrivateKey: null,
      password: null,
      nbdPorts: { first: 10809, last: 10809, range: false },
      nbdIp: "",
      tls: false,
      tlsCert: "/etc/pki/qemu/",
      syslog: false,
      quiet: false,
      nocolor: false,
      json: false,
      jsonFile: null,
      s3Endpoint: null,
      qemu: false,
      startonly: false,
      killonly: false,
      printonly: false,
      verbose: false,
    });
  });

  test("--uri defaults to qemu:///session and --ssh-user to the login name for non-root", () => {
    const a = parseBackupArgs(B, { ...CTX, user: "alice" });
    assert.equal(a.uri, "qemu:///session");
    assert.equal(a.sshUser, "alice");
    const none = parseBackupArgs(B, { ...CTX, user: null });
    assert.equal(none.uri, "qemu:///session");
    assert.equal(none.sshUser, null);
  });

  test("socketfile default uses the real pid when not injected", () => {
    assert.equal(parseBackupArgs(B).socketfile, `/var/tmp/virtnbdbackup.${process.pid}`);
  });

  test("every option sets its field", () => {
    const a = backup(
      ...B,
      "-l", "inc", "-t", "raw", "-r", "-C", "/cp", "--scratchdir", "/s", "-S", "--pause",
      "-i", "sda", "-x", "sdb,sdc", "-f", "/tmp/sock", "-n", "-z", "-w", "3", "-F", "/,/boot",
      "-e", "--no-sparse-detection", "-T", "100", "-U", "qemu+ssh://h/system", "--user", "u",
      "--password", "p", "--ssh-user", "s", "--ssh-port", "2", "--ssh-private-key", "k",
      "-P", "1", "-I", "1.2.3.4", "--tls", "--tls-cert", "/c", "-L", "--quiet", "--nocolor",
      "-q", "-s", "-k", "-p", "-v",
    );
    const { given, ...values } = a;
    assert.equal(given.size, 37, [...given].join(","));
    assert.ok(given.has("ssh_port") && given.has("tls_cert") && given.has("verbose"));
    assert.deepEqual(values, {
      domain: "vm", level: "inc", type: "raw", raw: true, output: "/b", checkpointdir: "/cp", chain: "", check: false, metricsFile: null,
      scratchdir: "/s", startDomain: true, pause: true, include: "sda", exclude: "sdb,sdc",
      socketfile: "/tmp/sock", noprogress: true, compress: 2, worker: 3, freezeMountpoint: "/,/boot",
      strict: true, noSparseDetection: true, threshold: 100, uri: "qemu+ssh://h/system", user: "u",
      sshUser: "s", sshPort: 2, sshPrivateKey: "k", password: "p", nbdPorts: { first: 1, last: 1, range: false }, nbdIp: "1.2.3.4",
      tls: true, tlsCert: "/c", syslog: true, quiet: true, nocolor: true, json: false, jsonFile: null, s3Endpoint: null, qemu: true,
      startonly: true, killonly: true, printonly: true, verbose: true,
    });
  });

  test("-L is --syslog in virtnbdbackup (a flag, no value)", () => {
    assert.equal(backup(...B, "-L").syslog, true);
    assert.equal(usageError(() => backup(...B, "-L", "x")), "virtnbdbackup: error: unrecognized arguments: x");
  });

  test("level and type choices", () => {
    for (const l of ["copy", "full", "inc", "diff", "auto"]) assert.equal(backup(...B, "-l", l).level, l);
    for (const t of ["stream", "raw"]) assert.equal(backup(...B, "-t", t).type, t);
    assert.equal(
      usageError(() => backup(...B, "-l", "foo")),
      "virtnbdbackup: error: argument -l/--level: invalid choice: 'foo' (choose from 'copy', 'full', 'inc', 'diff', 'auto')",
    );
    assert.equal(
      usageError(() => backup(...B, "--type=zip")),
      "virtnbdbackup: error: argument -t/--type: invalid choice: 'zip' (choose from 'stream', 'raw')",
    );
    assert.equal(
      usageError(() => backup(...B, "-l", "'x")),
      `virtnbdbackup: error: argument -l/--level: invalid choice: "'x" (choose from 'copy', 'full', 'inc', 'diff', 'auto')`,
    );
  });
});

describe("argparse rules", () => {
  test("values: separate, attached, --opt=value, abbreviated long option", () => {
    for (const argv of [
      ["-d", "vm", "-o", "/b"],
      ["-dvm", "-o/b"],
      ["--domain=vm", "--output", "/b"],
      ["--dom", "vm", "--out=/b"],
      ["-d", "vm", "-o=/b"],
    ]) {
      const a = backup(...argv);
      assert.equal(a.domain, "vm", argv.join(" "));
      assert.equal(a.output, "/b", argv.join(" "));
    }
  });

  test("upstream test suite's --no-sparse-detect abbreviation works", () => {
    assert.equal(backup(...B, "--no-sparse-detect").noSparseDetection, true);
    assert.equal(backup(...B, "--no-s").noSparseDetection, true);
  });

  test("ambiguous prefixes are usage errors listing candidates in declaration order", () => {
    assert.equal(
      usageError(() => backup(...B, "--s", "x")),
      "virtnbdbackup: error: ambiguous option: --s could match --scratchdir, --start-domain, --socketfile, --strict, --ssh-user, --ssh-port, --ssh-private-key, --syslog, --s3-endpoint, --startonly",
    );
    assert.equal(
      usageError(() => backup(...B, "--s=x")),
      "virtnbdbackup: error: ambiguous option: --s=x could match --scratchdir, --start-domain, --socketfile, --strict, --ssh-user, --ssh-port, --ssh-private-key, --syslog, --s3-endpoint, --startonly",
    );
    assert.equal(
      usageError(() => backup(...B, "--ssh-p", "2")),
      "virtnbdbackup: error: ambiguous option: --ssh-p could match --ssh-port, --ssh-private-key",
    );
    assert.equal(
      usageError(() => backup(...B, "--ver")),
      "virtnbdbackup: error: ambiguous option: --ver could match --verbose, --version",
    );
    assert.equal(
      usageError(() => restore("-i", "/b", "-o", "/t", "--co", "x")),
      "virtnbdrestore: error: ambiguous option: --co could match --config-file, --compress",
    );
    assert.equal(backup(...B, "--ssh-pr", "k").sshPrivateKey, "k");
    assert.equal(backup(...B, "--qu").quiet, true);
  });

  test("an exact long option wins over longer ones it prefixes", () => {
    assert.equal(backup(...B, "--tls").tls, true);
    assert.equal(
      usageError(() => backup(...B, "--tl")),
      "virtnbdbackup: error: ambiguous option: --tl could match --tls, --tls-cert",
    );
  });

  test("ambiguity is reported before errors of earlier arguments", () => {
    assert.match(usageError(() => backup("-l", "bad", "--s")), /ambiguous option: --s could match/);
  });

  test("grouped short flags, flags followed by a valued option", () => {
    const a = backup(...B, "-nvqskpe");
    assert.deepEqual(
      [a.noprogress, a.verbose, a.qemu, a.startonly, a.killonly, a.printonly, a.strict],
      [true, true, true, true, true, true, true],
    );
    const c = backup("-d", "vm", "-nvo/b");
    assert.equal(c.output, "/b");
    assert.equal(c.noprogress && c.verbose, true);
    const r = restore("-cD", "-i", "/b", "-o", "/t");
    assert.equal(r.adjustConfig && r.define, true);
    const r2 = restore("-Dc", "-i", "/b", "-o", "/t");
    assert.equal(r2.adjustConfig && r2.define, true);
    const m = map("-frH");
    assert.equal(m.file, "rH"); // -f takes the rest as its value
    assert.equal(
      usageError(() => backup(...B, "-nX")),
      "virtnbdbackup: error: argument -n/--noprogress: ignored explicit argument 'X'",
    );
  });

  test("flags reject an explicit value", () => {
    assert.equal(
      usageError(() => backup(...B, "--no-sparse-detection=1")),
      "virtnbdbackup: error: argument --no-sparse-detection: ignored explicit argument '1'",
    );
    assert.equal(
      usageError(() => backup(...B, "--tls=x")),
      "virtnbdbackup: error: argument --tls: ignored explicit argument 'x'",
    );
  });

  test("`-o -` is a value, so is a negative number; an option is not", () => {
    assert.equal(backup("-d", "vm", "-o", "-").output, "-");
    assert.equal(backup("-d", "vm", "-o", "-1").output, "-1");
    assert.equal(backup("-d", "-", "-o", "/b").domain, "-");
    assert.equal(backup("-d", "vm", "-o", "-a b").output, "-a b"); // contains a space
    assert.equal(backup("-d", "vm", "-o", "").output, "");
    assert.equal(backup(...B, "-w", "-1").worker, -1);
    assert.equal(backup(...B, "-T", "-5").threshold, -5);
    assert.equal(
      usageError(() => backup("-d", "vm", "-o", "-d")),
      "virtnbdbackup: error: argument -o/--output: expected one argument",
    );
    assert.equal(
      usageError(() => backup("-d", "vm", "-o", "-1e5")),
      "virtnbdbackup: error: argument -o/--output: expected one argument",
    );
    assert.equal(
      usageError(() => backup(...B, "-w")),
      "virtnbdbackup: error: argument -w/--worker: expected one argument",
    );
    assert.equal(
      usageError(() => backup(...B, "-l", "-z")),
      "virtnbdbackup: error: argument -l/--level: expected one argument",
    );
    assert.equal(
      usageError(() => backup(...B, "-l", "-1")),
      "virtnbdbackup: error: argument -l/--level: invalid choice: '-1' (choose from 'copy', 'full', 'inc', 'diff', 'auto')",
    );
  });

  test("repeated option: the last one wins", () => {
    assert.equal(backup(...B, "-o", "/c").output, "/c");
    assert.equal(backup(...B, "-l", "full", "-l", "inc").level, "inc");
    assert.equal(backup(...B, "-z", "5", "-z").compress, 2);
  });

  test("-z/--compress: optional int, bare = 2", () => {
    assert.equal(backup(...B).compress, false);
    assert.equal(backup(...B, "-z").compress, 2);
    assert.equal(backup("-d", "vm", "-z", "-o", "/b").compress, 2); // next token is an option
    assert.equal(backup(...B, "-z5").compress, 5);
    assert.equal(backup(...B, "-z", "5").compress, 5);
    assert.equal(backup(...B, "-z=3").compress, 3);
    assert.equal(backup(...B, "--compress=16").compress, 16);
    assert.equal(backup(...B, "--compress", "16").compress, 16);
    assert.equal(backup(...B, "--comp").compress, 2);
    assert.equal(backup(...B, "-z", "-1").compress, -1); // looks like a negative number: a value
    assert.equal(backup(...B, "-z", "0").compress, 0);
    assert.equal(backup(...B, "-nz").compress, 2);
    assert.equal(backup(...B, "-nz7").compress, 7);
    assert.equal(
      usageError(() => backup(...B, "-z", "x")),
      "virtnbdbackup: error: argument -z/--compress: invalid int value: 'x'",
    );
    assert.equal(
      usageError(() => backup(...B, "-zx")),
      "virtnbdbackup: error: argument -z/--compress: invalid int value: 'x'",
    );
    assert.equal(
      usageError(() => backup(...B, "--compress=")),
      "virtnbdbackup: error: argument -z/--compress: invalid int value: ''",
    );
    assert.equal(usageError(() => backup(...B, "-z", "--")), "virtnbdbackup: error: unrecognized arguments: --");
  });

  test("-P/--nbd-port: a port, a range N-M or auto; anything else is a usage error naming the value", () => {
    assert.deepEqual(backup(...B).nbdPorts, { first: 10809, last: 10809, range: false });
    assert.deepEqual(backup(...B, "-P", "10900").nbdPorts, { first: 10900, last: 10900, range: false });
    assert.deepEqual(backup(...B, "-P", "+10_900").nbdPorts, { first: 10900, last: 10900, range: false });
    assert.deepEqual(backup(...B, "--nbd-port=20000-20010").nbdPorts, { first: 20000, last: 20010, range: true });
    assert.deepEqual(backup(...B, "-P", "20000-20000").nbdPorts, { first: 20000, last: 20000, range: true });
    assert.deepEqual(backup(...B, "-P", "auto").nbdPorts, { first: 10809, last: 10909, range: true });
    assert.deepEqual(restore("-i", "/b", "-o", "/t", "-P", "auto").nbdPorts, { first: 10809, last: 10909, range: true });
    for (const bad of ["x", "0", "65536", "-1", "10809-", "-10809", "10809-x", "1.5", "10809:10810", "auto-10900", ""]) {
      const line = usageError(() => backup(...B, `--nbd-port=${bad}`));
      assert.equal(line, `virtnbdbackup: error: argument -P/--nbd-port: invalid port value: '${bad}' (a port 1-65535, a range N-M or auto)`);
    }
    assert.equal(
      usageError(() => backup(...B, "-P", "10900-10800")),
      "virtnbdbackup: error: argument -P/--nbd-port: invalid port range: '10900-10800' (the first port is above the last)",
    );
    // Checked in argparse's order: the bad value before the missing required options.
    assert.match(usageError(() => backup("-P", "x")), /argument -P\/--nbd-port: invalid port value/);
  });

  test("int values follow Python's int()", () => {
    assert.equal(backup(...B, "-w", " 3 ").worker, 3);
    assert.equal(backup(...B, "-w", "1_0").worker, 10);
    assert.equal(backup(...B, "-w", "+4").worker, 4);
    assert.equal(backup(...B, "-w", "007").worker, 7);
    for (const bad of ["x", "0x10", "1.5", "", "1__0", "_1"]) {
      assert.equal(
        usageError(() => backup(...B, "-w", bad)),
        `virtnbdbackup: error: argument -w/--worker: invalid int value: '${bad}'`,
      );
    }
    assert.equal(
      usageError(() => restore("-i", "/b", "-o", "/t", "-B", "x")),
      "virtnbdrestore: error: argument -B/--buffsize: invalid int value: 'x'",
    );
  });

  test("required options: all missing ones listed", () => {
    assert.equal(
      usageError(() => backup()),
      "virtnbdbackup: error: the following arguments are required: -d/--domain, -o/--output",
    );
    assert.equal(
      usageError(() => backup("-d", "vm")),
      "virtnbdbackup: error: the following arguments are required: -o/--output",
    );
    assert.equal(
      usageError(() => restore()),
      "virtnbdrestore: error: the following arguments are required: -i/--input, -o/--output",
    );
    assert.equal(usageError(() => map()), "virtnbdmap: error: the following arguments are required: -f/--file");
  });

  test("no positionals: extra and unknown arguments", () => {
    assert.equal(usageError(() => backup(...B, "extra")), "virtnbdbackup: error: unrecognized arguments: extra");
    assert.equal(usageError(() => backup(...B, "--foo")), "virtnbdbackup: error: unrecognized arguments: --foo");
    assert.equal(
      usageError(() => backup(...B, "--foo=bar")),
      "virtnbdbackup: error: unrecognized arguments: --foo=bar",
    );
    assert.equal(
      usageError(() => backup(...B, "--foo", "bar")),
      "virtnbdbackup: error: unrecognized arguments: --foo bar",
    );
    assert.equal(usageError(() => backup(...B, "-1")), "virtnbdbackup: error: unrecognized arguments: -1");
    assert.equal(usageError(() => backup(...B, "-X")), "virtnbdbackup: error: unrecognized arguments: -X");
    assert.equal(usageError(() => backup(...B, "--", "-x")), "virtnbdbackup: error: unrecognized arguments: -- -x");
    assert.equal(
      usageError(() => restore("-i", "/b", "-o", "/t", "-S")),
      "virtnbdrestore: error: unrecognized arguments: -S",
    );
  });

  test("a missing required option is reported before unrecognized arguments", () => {
    assert.equal(
      usageError(() => backup("-d", "vm", "--foo")),
      "virtnbdbackup: error: the following arguments are required: -o/--output",
    );
  });

  test("an explicit `--` value is refused (argparse would store an empty list)", () => {
    assert.equal(
      usageError(() => backup("-d", "vm", "--output=--")),
      "virtnbdbackup: error: argument -o/--output: expected one argument",
    );
    // ...but ordering stays argparse's: the required check comes first
    assert.equal(
      usageError(() => backup("-P--")),
      "virtnbdbackup: error: the following arguments are required: -d/--domain, -o/--output",
    );
    assert.equal(backup(...B, "-z=--").compress, 2); // nargs='?' falls back to the const
  });

  test("a single-dash word is a short option with an attached value", () => {
    assert.equal(backup("-domain", "-o", "/b").domain, "omain");
  });
});

describe("help and version", () => {
  test("-h/--help prints help to stdout, exit 0", () => {
    for (const argv of [["-h"], ["--help"], ["--he"], ["-nh"], [...B, "-h"]]) {
      const e = exitOf(() => backup(...argv));
      assert.equal(e.code, 0);
      assert.equal(e.stderr, "");
      assert.equal(e.stdout, helpText("virtnbdbackup", CTX));
    }
    assert.equal(
      usageError(() => backup("-hX")),
      "virtnbdbackup: error: argument -h/--help: ignored explicit argument 'X'",
    );
  });

  test("-V/--version prints both versions to stdout, exit 0", () => {
    assert.equal(VERSION, "2.47");
    assert.match(PACKAGE_VERSION, /^\d+\.\d+\.\d+/);
    assert.equal(FULL_VERSION, `2.47 (virtnbdbackup-ts ${PACKAGE_VERSION})`);
    for (const [fn, argv] of [
      [backup, ["-V"]],
      [backup, ["--vers"]],
      [backup, ["-V", "--foo"]], // acts when reached, before extras are reported
      [backup, ["-V", "-l", "bad"]],
      [restore, ["-V"]],
      [map, ["-f", "a", "--version"]],
    ] as const) {
      const e = exitOf(() => (fn as (...a: string[]) => unknown)(...argv));
      assert.deepEqual([e.code, e.stdout, e.stderr], [0, `2.47 (virtnbdbackup-ts ${PACKAGE_VERSION})\n`, ""], argv.join(" "));
    }
    assert.match(usageError(() => backup("-l", "bad", "-V")), /invalid choice: 'bad'/);
  });

  test("help text of virtnbdbackup matches upstream's layout", () => {
    const h = helpText("virtnbdbackup", CTX);
    assert.ok(
      h.startsWith(
        "usage: virtnbdbackup [-h] -d DOMAIN [-l {copy,full,inc,diff,auto}]\n" +
          "                     [-t {stream,raw}] [-r] -o OUTPUT [-C CHECKPOINTDIR]\n",
      ),
    );
    assert.ok(h.includes("\nBackup libvirt/qemu virtual machines\n\noptions:\n  -h, --help            show this help message and exit\n"));
    assert.ok(h.includes("  -z [COMPRESS], --compress [COMPRESS]\n                        Compress with lz4 compression level. (default: False)\n"));
    assert.ok(h.includes("  -f SOCKETFILE, --socketfile SOCKETFILE\n                        Use specified file for NBD Server socket (default: /var/tmp/virtnbdbackup.4242)\n"));
    assert.ok(h.includes("  -U URI, --uri URI     Libvirt connection URI. (default: qemu:///system)\n"));
    assert.ok(h.includes("Logging options:\n  -L, --syslog          Additionally send log messages to syslog (default: False)\n"));
    assert.ok(h.endsWith("\tvirtnbdbackup -U qemu+ssh://root@remotehost/system --ssh-user root -d webvm -l full -o /backup/\n"));
  });

  test("usage wraps to the terminal width", () => {
    const narrow = usageText("virtnbdrestore", { ...CTX, columns: 60 });
    for (const line of narrow.trimEnd().split("\n")) assert.ok(line.length <= 58, line);
    const wide = usageText("virtnbdmap", { ...CTX, columns: 400 });
    assert.equal(wide.split("\n").length, 2);
  });

  test("handleUsageExit writes the streams and returns the code", () => {
    const out: string[] = [];
    const err: string[] = [];
    const code = handleUsageExit(
      exitOf(() => backup()),
      { write: (s: string) => out.push(s) },
      { write: (s: string) => err.push(s) },
    );
    assert.equal(code, 2);
    assert.equal(out.length, 0);
    assert.match(err.join(""), /error: the following arguments are required/);
    assert.throws(() => handleUsageExit(new Error("boom")), /boom/);
  });
});

describe("virtnbdrestore options", () => {
  test("defaults (upstream 2.47)", () => {
    assert.deepEqual(restore("-i", "/b", "-o", "/t"), {
      given: new Set(["input", "output"]),
      action: "restore",
      input: "/b",
      output: "/t",
      until: null,
      sequence: null,
      disk: null,
      noprogress: false,
      socketfile: "/var/tmp/virtnbdbackup.4242",
      raw: false,
      adjustConfig: false,
      define: false,
      configFile: "vmconfig.xml",
      name: null,
      buffsize: 8192,
      preallocate: false,
      compress: false,
      toRaw: false,
      live: false,
      liveBandwidth: 0,
      force: false,
      uri: "qemu:///system",
      user: null,
      sshUser: "root",
      sshPort: 22,
      sshPrivateKey: null,
      password: null,
      nbdPorts: { first: 10809, last: 10809, range: false },
      nbdIp: "",
      tls: false,
      tlsCert: "/etc/pki/qemu/",
      logfile: "/root/virtnbdrestore.log",
      nocolor: false,
      json: false,
      jsonFile: null,
      s3Endpoint: null,
      verbose: false,
    });
  });

  test("-L is --logfile; default falls back to the temp dir without HOME", () => {
    assert.equal(restore("-i", "/b", "-o", "/t", "-L", "/x.log").logfile, "/x.log");
    const noHome = parseRestoreArgs(["-i", "/b", "-o", "/t"], { ...CTX, home: undefined, tmpdir: "/scratch" });
    assert.equal(noHome.logfile, "/scratch/virtnbdrestore.log");
  });

  test("actions and the other options", () => {
    for (const a of ["dump", "restore", "verify"]) assert.equal(restore("-i", "/b", "-o", "/t", "-a", a).action, a);
    assert.equal(
      usageError(() => restore("-i", "/b", "-o", "/t", "-a", "foo")),
      "virtnbdrestore: error: argument -a/--action: invalid choice: 'foo' (choose from 'dump', 'restore', 'verify')",
    );
    const r = restore(
      "-i", "/b", "-o", "/t", "-u", "virtnbdbackup.2", "-s", "a.full.data,b", "-d", "vda", "-n",
      "-f", "/s", "-r", "-C", "c.xml", "-N", "new", "-B", "65536", "-A", "--comp", "--nocolor", "-v",
    );
    assert.equal(r.until, "virtnbdbackup.2");
    assert.equal(r.sequence, "a.full.data,b");
    assert.equal(r.disk, "vda");
    assert.equal(r.socketfile, "/s");
    assert.equal(r.configFile, "c.xml");
    assert.equal(r.name, "new");
    assert.equal(r.buffsize, 65536);
    assert.ok(r.noprogress && r.raw && r.preallocate && r.compress && r.nocolor && r.verbose);
    assert.equal(
      usageError(() => restore("-i", "/b", "-o", "/t", "--compress=1")),
      "virtnbdrestore: error: argument --compress: ignored explicit argument '1'",
    );
  });
});

describe("virtnbdmap options", () => {
  test("defaults (upstream 2.47)", () => {
    assert.deepEqual(map("-f", "/b/sda.full.data"), {
      given: new Set(["file"]),
      file: "/b/sda.full.data",
      blocksize: "4096",
      device: "/dev/nbd0",
      exportName: "sda",
      threads: "1",
      listenAddress: "127.0.0.1",
      listenPort: "10809",
      listenOnly: false,
      cacheSize: "4G",
      noprogress: false,
      logfile: "/root/virtnbdmap.log",
      nocolor: false,
      json: false,
      jsonFile: null,
      s3Endpoint: null,
      readonly: false,
      hexdump: false,
      verbose: false,
    });
  });

  test("all options, string-typed numbers stay strings", () => {
    const m = map(
      "-f", "a,b", "-b", "8192", "-d", "/dev/nbd2", "-e", "vda", "-t", "x", "-l", "0.0.0.0",
      "-p", "10810", "--listen-only", "--cache-size", "512M", "-n", "-L", "/x.log", "--nocolor", "-r", "-H", "-v",
    );
    assert.deepEqual(m, {
      given: new Set(["file", "blocksize", "device", "export_name", "threads", "listen_address", "listen_port", "listen_only", "cache_size", "noprogress", "logfile", "nocolor", "readonly", "hexdump", "verbose"]),
      file: "a,b", blocksize: "8192", device: "/dev/nbd2", exportName: "vda", threads: "x",
      listenAddress: "0.0.0.0", listenPort: "10810", listenOnly: true, cacheSize: "512M", noprogress: true,
      logfile: "/x.log", nocolor: true, json: false, jsonFile: null, s3Endpoint: null, readonly: true, hexdump: true, verbose: true,
    });
  });

  test("--listen-only abbreviations", () => {
    assert.equal(map("-f", "a", "--listen-o").listenOnly, true);
    assert.equal(map("-f", "a", "--listen-a", "::1").listenAddress, "::1");
    assert.equal(
      usageError(() => map("-f", "a", "--listen", "x")),
      "virtnbdmap: error: ambiguous option: --listen could match --listen-address, --listen-port, --listen-only",
    );
  });
});

test("getuser follows Python's getpass.getuser() order", () => {
  assert.equal(getuser({ LOGNAME: "a", USER: "b" }), "a");
  assert.equal(getuser({ LOGNAME: "", USER: "b" }), "b");
  assert.equal(getuser({ LNAME: "c", USERNAME: "d" }), "c");
  assert.equal(getuser({ USERNAME: "d" }), "d");
  assert.equal(typeof getuser({}), "string"); // passwd entry of this process
});

describe("virtnbdprune options", () => {
  const it = test;
  const CTXP = { pid: 1, user: "root", home: "/root", tmpdir: "/tmp", columns: 80 };
  it("keep rules, dry run and the PATHs (also after --, also starting with -)", () => {
    const a = parsePruneArgs(["--keep-daily", "7", "/b/a", "-n", "--keep-weekly=4", "/b/b", "--", "-odd"], CTXP);
    assert.deepEqual(a.paths, ["/b/a", "/b/b", "-odd"]);
    assert.deepEqual(a.keep, { last: 0, hourly: 0, daily: 7, weekly: 4, monthly: 0, yearly: 0 });
    assert.equal(a.dryRun, true);
    assert.equal(a.uri, "qemu:///system");
    assert.equal(a.logfile, "/root/virtnbdprune.log");
  });
  it("usage errors: no PATH, an unknown option, a negative or non-numeric count", () => {
    const err = (argv: string[]) => {
      try {
        parsePruneArgs(argv, CTXP);
      } catch (e) {
        assert.ok(e instanceof UsageExit);
        assert.equal(e.code, 2);
        return e.stderr.trim().split("\n").at(-1);
      }
      assert.fail("no usage error");
    };
    assert.equal(err(["--keep-last", "1"]), "virtnbdprune: error: the following arguments are required: PATH");
    assert.equal(err(["--keep-lots", "1", "/b"]), "virtnbdprune: error: unrecognized arguments: --keep-lots");
    assert.equal(err(["--keep-last", "-2", "/b"]), "virtnbdprune: error: argument --keep-last: must not be negative: -2");
    assert.match(err(["--keep-last", "x", "/b"])!, /argument --keep-last: invalid int value: 'x'/);
  });
  it("usage line and help show the positional as argparse does", () => {
    assert.match(usageText("virtnbdprune", CTXP), /\[-V\] PATH\s+\[PATH \.\.\.\]\n$/);
    assert.match(helpText("virtnbdprune", CTXP), /\npositional arguments:\n  PATH {18}A backup target/);
  });
});
