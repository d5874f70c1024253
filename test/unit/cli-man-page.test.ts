// The man pages are generated from the parser declarations (src/cli/man-page.ts): every option
// of every command is in its page, the page renders without groff warnings, roff specials in
// the text are escaped, and the defaults are the documented ones, not this machine's.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parserSpec, type CommandName } from "../../src/cli/args.js";
import { actionsOf } from "../../src/cli/argparse.js";
import { MAN_CONTEXT, manPage, protectLines, roffInline, roffLiteral, roffText } from "../../src/cli/man-page.js";
import { tempDir } from "../helpers/tmp.js";

const COMMANDS: CommandName[] = ["virtnbdbackup", "virtnbdrestore", "virtnbdmap", "virtnbdprune"];
const GROFF = "/usr/bin/groff";
const noGroff = existsSync(GROFF) ? false : "needs groff (groff-base)";

/** Plain text of a page and groff's warnings (`-ww`: all of them). */
function render(source: string, file: string): { text: string; warnings: string } {
  writeFileSync(file, source);
  const r = spawnSync(GROFF, ["-man", "-Tascii", "-ww", "-P-cbou", file], { encoding: "utf8", env: { ...process.env, MANWIDTH: "80" } });
  assert.equal(r.status, 0, r.stderr);
  return { text: r.stdout, warnings: r.stderr };
}

for (const name of COMMANDS) {
  test(`${name}: every option string and group of --help is in the man page`, () => {
    const page = manPage(name, { date: "2026-01-01" });
    const spec = parserSpec(name, MAN_CONTEXT);
    const options = page.slice(page.indexOf("\n.SH OPTIONS\n"), page.indexOf("\n.SH EXIT STATUS\n"));
    const synopsis = page.slice(page.indexOf("\n.SH SYNOPSIS\n"), page.indexOf("\n.SH DESCRIPTION\n"));
    const tags = options.split("\n.TP\n").slice(1).map((item) => item.split("\n")[0]!);
    const bold = (o: string) => `\\fB${roffLiteral(o)}\\fR`;
    for (const a of actionsOf(spec)) {
      // in OPTIONS: a .TP tag line with every option string; in SYNOPSIS: the first one
      assert.ok(tags.some((t) => a.optionStrings.every((o) => t.includes(bold(o)))), `${a.optionStrings.join("/")} not in OPTIONS`);
      assert.ok(synopsis.includes(bold(a.optionStrings[0]!)), `${a.optionStrings[0]} not in SYNOPSIS`);
      if (a.group !== "options") assert.ok(page.includes(`.SS "${a.group}"`), a.group);
    }
    for (const section of ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "ENVIRONMENT", "FILES", "EXAMPLES", "DIFFERENCES FROM THE ORIGINAL", "SEE ALSO"]) {
      assert.match(page, new RegExp(`^\\.SH ${section}$`, "m"), section);
    }
    assert.ok(!page.includes("%("), "an unexpanded %(…)s");
  });

  test(`${name}: renders without groff warnings; options, defaults and examples readable`, { skip: noGroff }, async (t) => {
    const dir = await tempDir(t);
    const { text, warnings } = render(manPage(name, { date: "2026-01-01" }), join(dir, `${name}.1`));
    assert.equal(warnings, "");
    const flat = text.replace(/\s+/g, " ");
    for (const a of actionsOf(parserSpec(name, MAN_CONTEXT))) {
      for (const o of a.optionStrings) assert.ok(new RegExp(`(^|[\\s,\\[])${o}\\b`).test(flat), `${o} not in the rendered page`);
    }
    assert.match(flat, /Exit status|EXIT STATUS/);
    assert.match(flat, new RegExp(`${name} - `), "NAME line");
    // examples from the --help epilog, as typed
    const spec = parserSpec(name, MAN_CONTEXT);
    for (const line of (spec.epilog ?? "").split("\n").filter((l) => l.startsWith("\t"))) {
      const cmd = line.trim().replace("%(prog)s", name);
      assert.ok(text.includes(cmd), `example ${cmd}`);
    }
  });
}

test("defaults are the documented ones, not this machine's", () => {
  const backup = manPage("virtnbdbackup");
  assert.match(backup, /\/var\/tmp\/virtnbdbackup\.<pid>/);
  assert.ok(!backup.includes(`virtnbdbackup.${process.pid}`));
  assert.match(backup, /default: qemu:\/\/\/system/);
  assert.match(manPage("virtnbdrestore"), /\$HOME\/virtnbdrestore\.log/);
  assert.match(manPage("virtnbdmap"), /\$HOME\/virtnbdmap\.log/);
  // the same page whatever the environment says
  const saved = { HOME: process.env.HOME, USER: process.env.USER, LOGNAME: process.env.LOGNAME };
  try {
    Object.assign(process.env, { HOME: "/elsewhere", USER: "nobody", LOGNAME: "nobody" });
    assert.equal(manPage("virtnbdrestore", { date: "x" }), (Object.assign(process.env, saved), manPage("virtnbdrestore", { date: "x" })));
  } finally {
    for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

test("roff escaping: backslashes, minus signs, a leading dot or quote", () => {
  assert.equal(roffText("a\\b"), "a\\eb");
  assert.equal(roffText("use --no-sparse-detection or -z, re-use"), "use \\-\\-no\\-sparse\\-detection or \\-z, re-use");
  assert.equal(roffLiteral("virtnbdbackup-ts --x"), "virtnbdbackup\\-ts \\-\\-x");
  assert.equal(protectLines(".TH evil\n'br\nok"), "\\&.TH evil\n\\&'br\nok");
  assert.equal(roffInline("see `-o -` and -d"), "see \\fB\\-o\\ \\-\\fR and \\-d"); // not broken inside `…`
});

test("a text line starting with a dot stays text", { skip: noGroff }, async (t) => {
  const dir = await tempDir(t);
  const body = protectLines(roffText(".hidden request and \\backslash\n'also quoted"));
  const { text, warnings } = render(`.TH T 1\n.SH X\n${body}\n`, join(dir, "t.1"));
  assert.equal(warnings, "");
  assert.match(text.replace(/\s+/g, " "), /\.hidden request and \\backslash 'also quoted/);
});
