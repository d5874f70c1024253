/**
 * Man pages (roff, man macros) of the three commands, generated from the same parser
 * declarations `--help` and the parsers use (./args.ts), so they cannot drift: SYNOPSIS and
 * OPTIONS (grouped as in `--help`, defaults filled in) and EXAMPLES (the `--help` epilog) come
 * from `parserSpec()`, the prose sections from ./man-text.ts. `scripts/build-man.js` writes
 * them to dist/man/man1/.
 */
import { parserSpec, type CommandName, type DefaultsContext } from "./args.js";
import { actionsOf, expandHelp, formatArgs, type Action, type ParserSpec } from "./argparse.js";
import { PACKAGE_VERSION } from "../report/version.js";
import { MAN_TEXT, README_POINTER } from "./man-text.js";

/**
 * The defaults a man page documents: root's (the usual user of these tools), the pid and HOME
 * as placeholders, so that the page does not depend on the machine that built it.
 */
export const MAN_CONTEXT: DefaultsContext = { pid: "<pid>", user: "root", home: "$HOME", tmpdir: "/tmp", columns: 80 };

// ------------------------------------------------------------------ escaping

/**
 * Escape text for roff: backslashes; in a word that starts with `-` (an option) every `-`
 * becomes a minus sign `\-`, other hyphens stay.
 */
export function roffText(s: string): string {
  return s.replace(/\\/g, "\\e").replace(/(?<=^|[\s(\[{,="'/|])-[\w-]*/g, (w) => w.replace(/-/g, "\\-"));
}

/** Escape literal text (option names, commands, paths): every `-` becomes `\-`. */
export function roffLiteral(s: string): string {
  return s.replace(/\\/g, "\\e").replace(/-/g, "\\-");
}

/** Protect lines that would start with a control character (`.` or `'`). */
export function protectLines(s: string): string {
  return s
    .split("\n")
    .map((l) => (/^[.']/.test(l) ? `\\&${l}` : l))
    .join("\n");
}

/** Inline markup of ./man-text.ts: `code` → bold literal (not broken at its spaces), the rest escaped text. */
export function roffInline(s: string): string {
  return s
    .split(/(`[^`]*`)/)
    .map((part) =>
      part.startsWith("`") && part.endsWith("`") && part.length >= 2
        ? `\\fB${roffLiteral(part.slice(1, -1)).replace(/ /g, "\\ ")}\\fR` // unbreakable
        : roffText(part),
    )
    .join("");
}

/** A `.TH`/`.SS` argument in double quotes (a `"` inside is `\(dq`). */
function quoted(s: string): string {
  return `"${s.replace(/"/g, "\\(dq")}"`;
}

// ------------------------------------------------------------------ pieces

/** `\fB\-l\fR \fI{copy,full}\fR`: one option string with its argument, as `--help` shows it. */
function optionInvocation(a: Action, option: string): string {
  const flag = `\\fB${roffLiteral(option)}\\fR`;
  if (a.nargs === 0) return flag;
  const args = formatArgs(a);
  // `[COMPRESS]`: the brackets are not part of the name
  const m = /^\[(.*)\]$/.exec(args);
  return m ? `${flag} [\\fI${roffLiteral(m[1]!)}\\fR]` : `${flag} \\fI${roffLiteral(args)}\\fR`;
}

function synopsis(spec: ParserSpec, prog: string): string[] {
  const lines = [".SY " + roffLiteral(prog)];
  for (const a of actionsOf(spec)) {
    const inv = optionInvocation(a, a.optionStrings[0]!).replace(/ /g, "\\ ");
    lines.push(a.required ? inv : `[${inv}]`);
  }
  if (spec.positional) lines.push(`\\fI${roffLiteral(spec.positional.metavar)}\\fR\\ [\\fI${roffLiteral(spec.positional.metavar)}\\fR\\ ...]`);
  lines.push(".YS");
  return lines;
}

function optionsSection(spec: ParserSpec, prog: string, notes: Record<string, string>): string[] {
  const out = [".SH OPTIONS"];
  if (spec.positional) out.push(".TP", `\\fI${roffLiteral(spec.positional.metavar)}\\fR ...`, protectLines(roffText(spec.positional.help)));
  let group: string | null = null;
  for (const a of actionsOf(spec)) {
    if (a.group !== group) {
      group = a.group;
      // `-h` is in argparse's unnamed "options" group: directly under OPTIONS
      if (a.group !== "options") out.push(`.SS ${quoted(a.group)}`);
    }
    out.push(".TP", a.optionStrings.map((o) => optionInvocation(a, o)).join(", "));
    out.push(protectLines(roffText(expandHelp(a, prog))));
    // ours, in a paragraph of its own: the help line above is the original's
    const long = a.optionStrings.find((o) => o.startsWith("--"));
    const note = [a.required ? "Required." : "", long !== undefined ? (notes[long] ?? "") : ""].filter((x) => x !== "").join(" ");
    if (note !== "") out.push(".IP", protectLines(roffInline(note)));
  }
  return out;
}

/** The `--help` epilog's examples: `# comment:` lines and command lines. */
function examplesSection(spec: ParserSpec, prog: string): string[] {
  const out = [".SH EXAMPLES"];
  const lines = (spec.epilog ?? "").replace(/%\(prog\)s/g, prog).split("\n");
  for (const raw of lines) {
    const line = raw.trim();
    if (line === "" || line === "Examples:") continue;
    if (line.startsWith("#")) {
      const text = line.replace(/^#\s*/, "").replace(/:$/, ".");
      out.push(".PP", protectLines(roffText(text.charAt(0).toUpperCase() + text.slice(1))));
    } else {
      out.push(".PP", ".RS 4", ".nf", protectLines(roffLiteral(line)), ".fi", ".RE");
    }
  }
  return out;
}

function tagged(title: string, items: Array<[string, string]>, tagInline: boolean): string[] {
  const out = [`.SH ${title}`];
  for (const [tag, text] of items) {
    out.push(".TP", protectLines(tagInline ? roffInline(tag) : `\\fB${roffLiteral(tag)}\\fR`), protectLines(roffInline(text)));
  }
  return out;
}

/** `virsh(1)` → `.BR virsh (1)`, with commas between. */
function seeAlso(refs: readonly string[]): string[] {
  const out = [".SH SEE ALSO"];
  refs.forEach((r, i) => {
    const m = /^(.+)\((\w+)\)$/.exec(r);
    const comma = i < refs.length - 1 ? "," : "";
    out.push(m ? `.BR ${roffLiteral(m[1]!)} (${m[2]})${comma}` : `${roffText(r)}${comma}`);
  });
  out.push(".PP", protectLines(roffInline("The README.md and the docs/ folder of virtnbdbackup-ts: the backup set's files, the stream format and the behaviour in detail.")));
  return out;
}

export interface ManPageOptions {
  /** the date in the page footer (`.TH` third field); empty by default (reproducible builds) */
  date?: string;
  /** the package version in the footer; this package's by default */
  version?: string;
  /** defaults context; `MAN_CONTEXT` by default */
  context?: Partial<DefaultsContext>;
}

/** The man page of a command, roff source (section 1). */
export function manPage(name: CommandName, opts: ManPageOptions = {}): string {
  const spec = parserSpec(name, { ...MAN_CONTEXT, ...opts.context });
  const prog = spec.prog ?? spec.command.name();
  const text = MAN_TEXT[name];
  const description = spec.command.description();
  const summary = description.charAt(0).toLowerCase() + description.slice(1);
  const version = opts.version ?? PACKAGE_VERSION;
  const lines: string[] = [
    `.\\" Man page of ${prog}, generated by scripts/build-man.js from src/cli/args.ts and src/cli/man-text.ts.`,
    `.\\" Do not edit; change those files instead.`,
    `.TH ${roffLiteral(prog.toUpperCase())} 1 ${quoted(opts.date ?? "")} ${quoted(roffLiteral(`virtnbdbackup-ts ${version}`))} "User Commands"`,
    ".\\\" technical text: no hyphenation (HY: groff's .YS restores it), no justification",
    ".nr HY 0",
    ".nh",
    ".ad l",
    ".SH NAME",
    `${roffLiteral(prog)} \\- ${roffText(summary)}`,
    ".SH SYNOPSIS",
    ...synopsis(spec, prog),
    ".SH DESCRIPTION",
  ];
  text.description.forEach((p, i) => {
    if (i > 0) lines.push(".PP");
    lines.push(protectLines(roffInline(p)));
  });
  lines.push(...optionsSection(spec, prog, text.optionNotes));
  lines.push(...tagged("EXIT STATUS", text.exitStatus, false));
  lines.push(...tagged("ENVIRONMENT", text.environment, false));
  lines.push(...tagged("FILES", text.files, true));
  lines.push(...examplesSection(spec, prog));
  lines.push(".SH DIFFERENCES FROM THE ORIGINAL");
  for (const d of text.differences) lines.push(".IP \\(bu 2", protectLines(roffInline(d)));
  lines.push(".PP", protectLines(roffInline(README_POINTER)));
  lines.push(...seeAlso(text.seeAlso));
  return lines.join("\n") + "\n";
}

/** File names under dist/man: `man1/<command>.1`. */
export const MAN_PAGES: ReadonlyArray<{ name: CommandName; file: string }> = (
  ["virtnbdbackup", "virtnbdrestore", "virtnbdmap", "virtnbdprune"] as const
).map((name) => ({ name, file: `man1/${name}.1` }));
