// Differential test: our argparse engine against the real Python argparse.
// The Python parser is built from our own option tables (actionsOf), so this
// checks the parsing/formatting rules, not the tables (cli-args.test.ts does
// that). Runs when Debian 12's /usr/bin/python3 (3.11) is present: argparse's
// wording and help layout changed in later Python versions.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { parserSpec, type CommandName } from "../../src/cli/args.js";
import { actionsOf, formatHelp, parseArgparse, UsageExit, type ParserSpec } from "../../src/cli/argparse.js";

const PYTHON = "/usr/bin/python3";

function pythonVersion(): string | null {
  if (!existsSync(PYTHON)) return null;
  const r = spawnSync(PYTHON, ["-c", "import sys; print('%d.%d' % sys.version_info[:2])"], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : null;
}

const ORACLE = String.raw`
import argparse, contextlib, io, json, re, sys
spec = json.load(sys.stdin)
def nbd_ports(value):
    # -P of src/connect/nbd-ports.ts, as an argparse type function.
    s = value.strip()
    if s == "auto":
        return {"first": 10809, "last": 10909, "range": True}
    def port(t):
        n = int(t) if re.fullmatch(r"\+?[0-9]+(?:_[0-9]+)*", t) else 0
        if not 1 <= n <= 65535:
            raise argparse.ArgumentTypeError("invalid port value: %r (a port 1-65535, a range N-M or auto)" % value)
        return n
    m = re.fullmatch(r"(\S+?)-(\S+)", s)
    if not m:
        p = port(s)
        return {"first": p, "last": p, "range": False}
    first, last = port(m.group(1)), port(m.group(2))
    if last < first:
        raise argparse.ArgumentTypeError("invalid port range: %r (the first port is above the last)" % value)
    return {"first": first, "last": last, "range": True}
TYPES = {"nbd_port": nbd_ports}
def build():
    p = argparse.ArgumentParser(prog=spec["prog"], description=spec["description"], epilog=spec["epilog"],
                                formatter_class=argparse.RawTextHelpFormatter)
    groups = {}
    for a in spec["actions"]:
        if a["kind"] == "help":
            continue
        g = groups.get(a["group"])
        if g is None:
            g = groups[a["group"]] = p.add_argument_group(a["group"])
        kw = dict(dest=a["dest"], help=a["help"], default=a["default"])
        if a["kind"] == "store_true":
            kw["action"] = "store_true"
        elif a["kind"] == "version":
            kw.update(action="version", version=spec["version"])
        else:
            kw.update(type=TYPES[a["typed"]] if a["typed"] else int if a["type"] == "int" else str, required=a["required"])
            if a["choices"] is not None:
                kw["choices"] = a["choices"]
            if a["nargs"] == "?":
                kw.update(nargs="?", const=a["const"])
        g.add_argument(*a["optionStrings"], **kw)
    return p
out = []
for argv in spec["cases"]:
    p = build()
    o, e = io.StringIO(), io.StringIO()
    code, values = 0, None
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        try:
            values = vars(p.parse_args(argv))
        except SystemExit as x:
            code = x.code
    out.append({"code": code, "stdout": o.getvalue(), "stderr": e.getvalue(), "values": values})
print(json.dumps(out))
`;

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
  values: Record<string, unknown> | null;
}

function ours(spec: ParserSpec, argv: string[]): Outcome {
  try {
    return { code: 0, stdout: "", stderr: "", values: parseArgparse(spec, argv).values };
  } catch (e) {
    if (e instanceof UsageExit) return { code: e.code, stdout: e.stdout, stderr: e.stderr, values: null };
    throw e;
  }
}

function python(spec: ParserSpec, cases: string[][]): Outcome[] {
  const input = JSON.stringify({
    prog: spec.prog,
    description: spec.command.description(),
    epilog: spec.epilog,
    version: spec.version,
    // typedOption's converters have a Python twin in the oracle (TYPES), by dest.
    actions: actionsOf(spec).map((a) => ({ ...a, choices: a.choices ?? null, typed: a.parse ? a.dest : null })),
    cases,
  });
  const r = spawnSync(PYTHON, ["-c", ORACLE], {
    input,
    encoding: "utf8",
    env: { PATH: "/usr/bin:/bin", COLUMNS: String(spec.columns ?? 80), LC_ALL: "C.UTF-8" },
    maxBuffer: 64 * 1024 * 1024,
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as Outcome[];
}

/** Deterministic pseudo-random argv lists built from a command's own vocabulary. */
function fuzzCases(spec: ParserSpec, count: number, seed: number): string[][] {
  let state = seed >>> 0;
  const rnd = (n: number) => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state % n;
  };
  const strings = actionsOf(spec).flatMap((a) => a.optionStrings).filter((s) => s !== "-h" && s !== "--help");
  const longs = strings.filter((s) => s.startsWith("--"));
  const shorts = strings.filter((s) => !s.startsWith("--"));
  const values = ["x", "-", "-1", "7", "", "--", "-x y", "a=b", "full", "inc", "dump", "copy", "1_0", "-1.5", "0x1", "auto", "7-9", "9-7", "'"];
  const token = (): string => {
    switch (rnd(9)) {
      case 0:
      case 1:
        return shorts[rnd(shorts.length)]!;
      case 2:
        return longs[rnd(longs.length)]!;
      case 3: {
        const l = longs[rnd(longs.length)]!;
        return l.slice(0, 3 + rnd(l.length - 2));
      }
      case 4:
        return `${longs[rnd(longs.length)]!}=${values[rnd(values.length)]!}`;
      case 5: {
        const n = 2 + rnd(3);
        let s = "-";
        for (let i = 0; i < n; i++) s += shorts[rnd(shorts.length)]![1];
        return s;
      }
      case 6:
        return shorts[rnd(shorts.length)]! + values[rnd(values.length)]!;
      default:
        return values[rnd(values.length)]!;
    }
  };
  const cases: string[][] = [];
  for (let i = 0; i < count; i++) {
    const argv: string[] = [];
    const len = rnd(7);
    for (let j = 0; j < len; j++) argv.push(token());
    cases.push(argv);
  }
  return cases;
}

const HAND_PICKED: string[][] = [
  [],
  ["-V"],
  ["--foo", "-V"],
  ["-x", "--foo"],
  ["--", "a"],
  ["-nvX"],
  ["--help=x"],
];

const version = pythonVersion();
const skip = version === "3.11" ? false : `needs Debian 12's Python 3.11 at ${PYTHON} (found ${version ?? "none"})`;

for (const name of ["virtnbdbackup", "virtnbdrestore", "virtnbdmap"] as CommandName[]) {
  test(`${name}: parse results and messages equal Python argparse`, { skip }, () => {
    const spec = parserSpec(name, { pid: 77, user: "root", home: "/root", columns: 80 });
    const required = actionsOf(spec).filter((a) => a.required).flatMap((a) => [a.optionStrings[0]!, "v"]);
    const fuzz = fuzzCases(spec, 400, name.length * 7919);
    // half of the fuzz cases get the required options, so they can succeed
    const cases = [
      ...HAND_PICKED,
      ...fuzz.map((c, i) => (i % 2 === 0 ? [...required, ...c] : c)),
    ];
    const expected = python(spec, cases);
    let successes = 0;
    cases.forEach((argv, i) => {
      const exp = expected[i]!;
      const got = ours(spec, argv);
      if (got.code === 0 && got.values) successes++;
      assert.deepEqual(got, exp, `argv: ${JSON.stringify(argv)}`);
    });
    assert.ok(successes > 20, `only ${successes} successful parses in the corpus`);
  });

  test(`${name}: help text equals Python argparse at several widths`, { skip }, () => {
    for (const columns of [80, 50, 132]) {
      const spec = parserSpec(name, { pid: 77, user: "root", home: "/root", columns });
      const [py] = python(spec, [["-h"]]);
      assert.equal(py!.code, 0);
      assert.equal(formatHelp(spec), py!.stdout, `columns=${columns}`);
    }
  });
}
