/**
 * An option parser that follows Python argparse's rules (as of Python 3.11,
 * the version Debian 12 ships with the original tools), for parsers that have
 * only optional arguments — which is all three commands have.
 *
 * The options themselves are declared with commander (`Command` + `Option`:
 * flags, description, default, choices, preset, mandatory, help group); this
 * module reads those declarations and applies argparse's algorithm, which
 * commander's own parser cannot reproduce:
 *  - long options may be abbreviated to any unambiguous prefix;
 *  - an argument is classified as an option or a value *before* anything is
 *    consumed (`-o -` and `-o -1` are values, `-o -d` is "expected one
 *    argument"), ambiguity errors are reported before any other error;
 *  - `nargs='?'` (`-z`) takes the next token only when it is not an option;
 *  - short flags group (`-cD`), values attach (`-oDIR`, `-o=DIR`);
 *  - errors and help are worded and laid out exactly like argparse.
 *
 * Nothing here prints or exits: help, version and usage errors are thrown as
 * `UsageExit` with the text argparse would print and its exit status.
 */
import { Command, Option } from "commander";
import { pyRepr, pyStr } from "../report/humanize.js";

/** Thrown instead of printing + exiting: `-h`, `-V` (code 0) and usage errors (code 2). */
export class UsageExit extends Error {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  constructor(code: number, stdout: string, stderr: string) {
    super(stderr !== "" ? stderr.trimEnd().split("\n").pop() : `exit ${code}`);
    this.name = "UsageExit";
    this.code = code;
    this.stdout = stdout;
    this.stderr = stderr;
  }
}

/** Python-compatible `int()` of a command-line string, as `.argParser()` of int options. */
export function parsePyInt(value: string): number {
  const s = value.trim();
  if (!/^[+-]?\d+(?:_\d+)*$/.test(s)) throw new InvalidValue(`invalid int value: ${pyRepr(value)}`);
  return Number(BigInt(s.replace(/_/g, "")));
}

class InvalidValue extends Error {}

/** A typed option's value check failed: argparse prints `argument -X/--xx: <message>` (Python's ArgumentTypeError). */
export class ArgumentTypeError extends Error {}

/**
 * Declare an option whose value `parse` converts (argparse `type=<function>`); `parse` throws
 * ArgumentTypeError for a bad value. A string default is converted too, as argparse does.
 */
export function typedOption(flags: string, description: string, parse: (value: string) => unknown): Option {
  TYPE_FUNCTIONS.add(parse);
  return new Option(flags, description).argParser(parse as (v: string, p: unknown) => unknown);
}

/** The converters of `typedOption`s (commander's `choices()` sets a parser of its own). */
const TYPE_FUNCTIONS = new WeakSet<(value: string) => unknown>();

/** Declare an int-typed option (argparse `type=int`). */
export function intOption(flags: string, description: string): Option {
  return new Option(flags, description).argParser(parsePyInt as (v: string, p: unknown) => unknown);
}

/** Declare a flag (argparse `action="store_true"`, default False). */
export function flagOption(flags: string, description: string): Option {
  return new Option(flags, description).default(false);
}

/** Declare a str-typed option with a value (argparse `type=str`). */
export function strOption(flags: string, description: string): Option {
  return new Option(flags, description);
}

/** What the parser knows about a command beyond commander's declarations. */
export interface ParserSpec {
  /** commander command holding name, description and the options (in argparse order). */
  command: Command;
  /** `prog`: the name in usage lines and error messages. Defaults to `command.name()`. */
  prog?: string;
  /** argparse `epilog` (printed raw; `%(prog)s` is expanded). */
  epilog?: string;
  /** the string `-V/--version` prints. */
  version: string;
  /** help/usage width in columns, as `shutil.get_terminal_size().columns`. */
  columns?: number;
  /**
   * One positional argument taking one or more values (`nargs='+'`), stored as a list under
   * `dest`: ours (virtnbdprune's PATHs); the original's commands have none.
   */
  positional?: Positional;
}

export interface Positional {
  dest: string;
  metavar: string;
  help: string;
}

/** `PATH [PATH ...]`, as argparse shows `nargs='+'`. */
export const positionalUsage = (p: Positional): string => `${p.metavar} [${p.metavar} ...]`;

type Kind = "store" | "store_true" | "help" | "version";

/** One argparse action, derived from a commander Option. */
export interface Action {
  optionStrings: string[];
  /** Python dest: `freeze_mountpoint`. */
  dest: string;
  /** TS attribute name: `freezeMountpoint`. */
  key: string;
  kind: Kind;
  nargs: 0 | 1 | "?";
  type: "str" | "int";
  /** `typedOption`'s converter. */
  parse: ((value: string) => unknown) | null;
  choices: readonly string[] | undefined;
  default: unknown;
  const: unknown;
  required: boolean;
  help: string;
  group: string;
}

const HELP_GROUP = "options";

function camel(dest: string): string {
  return dest.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

/** The argparse actions of a spec, `-h/--help` first, then commander's options in order. */
export function actionsOf(spec: ParserSpec): Action[] {
  const actions: Action[] = [
    {
      optionStrings: ["-h", "--help"],
      dest: "help",
      key: "help",
      kind: "help",
      nargs: 0,
      type: "str",
      parse: null,
      choices: undefined,
      default: undefined,
      const: undefined,
      required: false,
      help: "show this help message and exit",
      group: HELP_GROUP,
    },
  ];
  let group = "General options";
  for (const o of spec.command.options) {
    const strings = [o.short, o.long].filter((s): s is string => typeof s === "string");
    const long = o.long ?? o.short!;
    const dest = long.replace(/^-+/, "").replace(/-/g, "_");
    const isVersion = o.long === "--version";
    const kind: Kind = isVersion ? "version" : o.required || o.optional ? "store" : "store_true";
    group = o.helpGroupHeading ?? group;
    actions.push({
      optionStrings: strings,
      dest,
      key: camel(dest),
      kind,
      nargs: kind === "store" ? (o.optional ? "?" : 1) : 0,
      type: o.parseArg === (parsePyInt as unknown) ? "int" : "str",
      parse: o.parseArg && TYPE_FUNCTIONS.has(o.parseArg as (value: string) => unknown) ? (o.parseArg as (value: string) => unknown) : null,
      choices: o.argChoices,
      default: kind === "store_true" || kind === "version" ? (o.defaultValue ?? false) : (o.defaultValue ?? null),
      const: o.presetArg,
      required: o.mandatory,
      help: o.description,
      group,
    });
  }
  return actions;
}

// ---------------------------------------------------------------- help text

function metavarOf(a: Action): string {
  if (a.choices) return `{${a.choices.join(",")}}`;
  return a.dest.toUpperCase();
}

/** An option's argument as help shows it: `OUTPUT`, `{copy,full,…}`, `[COMPRESS]`. */
export function formatArgs(a: Action): string {
  const mv = metavarOf(a);
  return a.nargs === "?" ? `[${mv}]` : mv;
}

function usagePart(a: Action): string {
  const part = a.nargs === 0 ? a.optionStrings[0]! : `${a.optionStrings[0]} ${formatArgs(a)}`;
  return a.required ? part : `[${part}]`;
}

function invocation(a: Action): string {
  if (a.nargs === 0) return a.optionStrings.join(", ");
  const args = formatArgs(a);
  return a.optionStrings.map((s) => `${s} ${args}`).join(", ");
}

/** An action's help text with argparse's `%(default)s`, `%(prog)s`, … filled in. */
export function expandHelp(a: Action, prog: string): string {
  const params: Record<string, string> = {
    default: pyStr(a.default),
    dest: a.dest,
    prog,
    required: pyStr(a.required),
    const: pyStr(a.const),
    type: a.type,
    choices: a.choices ? a.choices.join(", ") : "None",
    metavar: "None",
    nargs: a.nargs === 1 ? "None" : String(a.nargs),
    help: a.help,
    option_strings: `[${a.optionStrings.map(pyRepr).join(", ")}]`,
  };
  return a.help.replace(/%\((\w+)\)s|%%/g, (m, name: string | undefined) =>
    name === undefined ? "%" : (params[name] ?? m),
  );
}

/** argparse's width: `COLUMNS` if set and positive, else the terminal's, else 80; minus 2. */
export function helpWidth(columns?: number): number {
  let cols = columns;
  if (cols === undefined) {
    const env = Number.parseInt(process.env.COLUMNS ?? "", 10);
    if (Number.isFinite(env) && env > 0) cols = env;
    else if (process.stdout.isTTY && process.stdout.columns > 0) cols = process.stdout.columns;
    else cols = 80;
  }
  return cols - 2;
}

function progOf(spec: ParserSpec): string {
  return spec.prog ?? spec.command.name();
}

/** The `usage: …` block exactly as argparse prints it (ends with one newline). */
export function formatUsage(spec: ParserSpec): string {
  const prefix = "usage: ";
  const prog = progOf(spec);
  const width = helpWidth(spec.columns);
  const parts = actionsOf(spec).map(usagePart);
  if (spec.positional) parts.push(positionalUsage(spec.positional));
  const actionUsage = parts.join(" ");
  let usage = [prog, actionUsage].filter((s) => s !== "").join(" ");
  const textWidth = width;
  if (prefix.length + usage.length > textWidth) {
    const getLines = (items: string[], indent: string, pfx?: string): string[] => {
      const lines: string[] = [];
      let line: string[] = [];
      let lineLen = pfx !== undefined ? pfx.length - 1 : indent.length - 1;
      for (const part of items) {
        if (lineLen + 1 + part.length > textWidth && line.length > 0) {
          lines.push(indent + line.join(" "));
          line = [];
          lineLen = indent.length - 1;
        }
        line.push(part);
        lineLen += part.length + 1;
      }
      if (line.length > 0) lines.push(indent + line.join(" "));
      if (pfx !== undefined) lines[0] = lines[0]!.slice(indent.length);
      return lines;
    };
    // argparse re-splits the joined usage: a required "-o OUTPUT" may break
    // between option and metavar, a bracketed "[-o OUTPUT]" may not.
    const optParts = actionUsage.match(/\(.*?\)+(?=\s|$)|\[.*?\]+(?=\s|$)|\S+/g) ?? [];
    let lines: string[];
    if (prefix.length + prog.length <= 0.75 * textWidth) {
      const indent = " ".repeat(prefix.length + prog.length + 1);
      lines = optParts.length > 0 ? getLines([prog, ...optParts], indent, prefix) : [prog];
    } else {
      const indent = " ".repeat(prefix.length);
      lines = [prog, ...getLines(optParts, indent)];
    }
    usage = lines.join("\n");
  }
  return `${prefix}${usage}\n`;
}

function formatPositional(p: Positional, helpPosition: number): string {
  const head = `  ${p.metavar}`;
  return head.length + 2 <= helpPosition ? `${head.padEnd(helpPosition)}${p.help}\n` : `${head}\n${" ".repeat(helpPosition)}${p.help}\n`;
}

/** The full `--help` text exactly as argparse's RawTextHelpFormatter prints it. */
export function formatHelp(spec: ParserSpec): string {
  const prog = progOf(spec);
  const width = helpWidth(spec.columns);
  const maxHelpPosition = Math.min(24, Math.max(width - 20, 4));
  const actions = actionsOf(spec);
  const indent = 2;
  const actionMaxLength = Math.max(0, ...actions.map((a) => invocation(a).length + indent));
  const helpPosition = Math.min(actionMaxLength + 2, maxHelpPosition);
  const actionWidth = helpPosition - indent - 2;

  const formatAction = (a: Action): string => {
    const header = invocation(a);
    const helpText = expandHelp(a, prog);
    const pad = " ".repeat(indent);
    let out: string;
    let indentFirst: number;
    if (!a.help) return `${pad}${header}\n`;
    if (header.length <= actionWidth) {
      out = `${pad}${header.padEnd(actionWidth)}  `;
      indentFirst = 0;
    } else {
      out = `${pad}${header}\n`;
      indentFirst = helpPosition;
    }
    if (a.help.trim() !== "") {
      const lines = helpText.split(/\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]/);
      if (lines.length > 1 && lines[lines.length - 1] === "") lines.pop();
      if (lines.length > 0) {
        out += " ".repeat(indentFirst) + lines[0] + "\n";
        for (const l of lines.slice(1)) out += " ".repeat(helpPosition) + l + "\n";
      }
    } else if (!out.endsWith("\n")) out += "\n";
    return out;
  };

  const text = (t: string | undefined): string => {
    if (!t) return "";
    const expanded = t.includes("%(prog)") ? t.replace(/%\(prog\)s/g, prog) : t;
    return expanded + "\n\n";
  };

  const sections: string[] = [];
  sections.push(formatUsage(spec) + "\n");
  sections.push(text(spec.command.description()));
  if (spec.positional) sections.push(`\npositional arguments:\n${formatPositional(spec.positional, helpPosition)}\n`);
  const groups: string[] = [];
  for (const a of actions) if (!groups.includes(a.group)) groups.push(a.group);
  for (const g of groups) {
    const items = actions.filter((a) => a.group === g).map(formatAction).join("");
    if (items !== "") sections.push(`\n${g}:\n${items}\n`);
  }
  sections.push(text(spec.epilog));
  let help = `\n${sections.join("")}\n`;
  help = help.replace(/\n\n\n+/g, "\n\n");
  return help.replace(/^\n+|\n+$/g, "") + "\n";
}

// ------------------------------------------------------------------ parsing

interface OptTuple {
  action: Action | null;
  optionString: string;
  explicitArg: string | null;
}

class ArgumentError extends Error {
  constructor(action: Action, message: string) {
    super(`argument ${action.optionStrings.join("/")}: ${message}`);
  }
}

class ParserError extends Error {}

const NEGATIVE_NUMBER = /^-\d+$|^-\d*\.\d+$/;

/** Parse result: values by Python dest, plus which dests were given on the command line. */
export interface ParseResult {
  values: Record<string, unknown>;
  seen: Set<string>;
}

/**
 * Parse `argv` (without the program name) like `parser.parse_args(argv)`.
 * Throws `UsageExit` for help (0), version (0) and every usage error (2).
 */
export function parseArgparse(spec: ParserSpec, argv: readonly string[]): ParseResult {
  const actions = actionsOf(spec);
  const prog = progOf(spec);
  const error = (message: string): never => {
    throw new UsageExit(2, "", `${formatUsage(spec)}${prog}: error: ${message}\n`);
  };
  try {
    return parseInner(spec, actions, argv);
  } catch (e) {
    if (e instanceof ArgumentError || e instanceof ParserError) return error(e.message);
    throw e;
  }
}

function parseInner(spec: ParserSpec, actions: Action[], argv: readonly string[]): ParseResult {
  return new ArgvParser(spec, actions, argv).parse();
}

/** One `parse_args` call: argparse's two passes (classify tokens, then consume options in order). */
class ArgvParser {
  private readonly optionMap = new Map<string, Action>();
  private readonly values: Record<string, unknown> = {};
  private readonly seen = new Set<string>();
  private readonly extras: string[] = [];
  /** Per token: 'O' option, 'A' argument, '-' for "--". */
  private readonly pattern: string[] = [];
  private readonly optionIndices = new Map<number, OptTuple>();

  constructor(
    private readonly spec: ParserSpec,
    private readonly actions: Action[],
    private readonly argv: readonly string[],
  ) {
    for (const a of actions) for (const s of a.optionStrings) this.optionMap.set(s, a);
    for (const a of actions) if (a.kind !== "help") this.values[a.dest] = a.default;
  }

  parse(): ParseResult {
    this.classify();
    // Pass 2: consume options in order; anything that is not an option or an
    // option's value ends up in extras.
    const { argv, optionIndices, extras } = this;
    const indices = [...optionIndices.keys()].sort((a, b) => a - b);
    const maxOptionIndex = indices.length > 0 ? indices[indices.length - 1]! : -1;
    let startIndex = 0;
    while (startIndex <= maxOptionIndex) {
      const nextOptionIndex = indices.find((i) => i >= startIndex)!;
      if (!optionIndices.has(startIndex)) {
        extras.push(...argv.slice(startIndex, nextOptionIndex));
        startIndex = nextOptionIndex;
      }
      startIndex = this.consumeOptional(startIndex);
    }
    extras.push(...argv.slice(startIndex));

    // argparse converts a string default of a typed option that was not given.
    for (const a of this.actions) {
      if (a.parse && !this.seen.has(a.dest) && typeof a.default === "string") this.values[a.dest] = this.convert(a, a.default);
    }
    const missing = this.actions.filter((a) => a.required && !this.seen.has(a.dest));
    if (missing.length > 0) {
      throw new ParserError(
        `the following arguments are required: ${missing.map((a) => a.optionStrings.join("/")).join(", ")}`,
      );
    }
    const positional = this.spec.positional;
    if (positional) {
      // After "--" everything is a value, also what starts with "-".
      const dd = extras.indexOf("--");
      const before = dd < 0 ? extras : extras.slice(0, dd);
      const unknown = before.filter((x) => x.startsWith("-") && x !== "-" && !NEGATIVE_NUMBER.test(x));
      if (unknown.length > 0) throw new ParserError(`unrecognized arguments: ${unknown.join(" ")}`);
      const values = dd < 0 ? extras : [...before, ...extras.slice(dd + 1)];
      if (values.length === 0) throw new ParserError(`the following arguments are required: ${positional.metavar}`);
      this.values[positional.dest] = values;
      this.seen.add(positional.dest);
      return { values: this.values, seen: this.seen };
    }
    if (extras.length > 0) throw new ParserError(`unrecognized arguments: ${extras.join(" ")}`);
    return { values: this.values, seen: this.seen };
  }

  /** Pass 1: classify every token. */
  private classify(): void {
    const { argv, pattern } = this;
    for (let i = 0; i < argv.length; i++) {
      const arg = argv[i]!;
      if (arg === "--") {
        pattern.push("-");
        for (i++; i < argv.length; i++) pattern.push("A");
        break;
      }
      const t = this.parseOptional(arg);
      if (t === null) pattern.push("A");
      else {
        this.optionIndices.set(i, t);
        pattern.push("O");
      }
    }
  }

  /** Abbreviations: every option string `arg` may stand for. */
  private optionTuples(arg: string): OptTuple[] {
    const result: OptTuple[] = [];
    if (arg[1] === "-") {
      let prefix = arg;
      let explicit: string | null = null;
      const eq = arg.indexOf("=");
      if (eq >= 0) {
        prefix = arg.slice(0, eq);
        explicit = arg.slice(eq + 1);
      }
      for (const [s, a] of this.optionMap) {
        if (s.startsWith(prefix)) result.push({ action: a, optionString: s, explicitArg: explicit });
      }
    } else {
      const shortPrefix = arg.slice(0, 2);
      const shortExplicit = arg.slice(2);
      for (const [s, a] of this.optionMap) {
        if (s === shortPrefix) result.push({ action: a, optionString: s, explicitArg: shortExplicit });
        else if (s.startsWith(arg)) result.push({ action: a, optionString: s, explicitArg: null });
      }
    }
    return result;
  }

  private parseOptional(arg: string): OptTuple | null {
    if (arg === "") return null;
    if (arg[0] !== "-") return null;
    const exact = this.optionMap.get(arg);
    if (exact) return { action: exact, optionString: arg, explicitArg: null };
    if (arg.length === 1) return null;
    const eq = arg.indexOf("=");
    if (eq >= 0) {
      const os = arg.slice(0, eq);
      const a = this.optionMap.get(os);
      if (a) return { action: a, optionString: os, explicitArg: arg.slice(eq + 1) };
    }
    const tuples = this.optionTuples(arg);
    if (tuples.length > 1) {
      throw new ParserError(
        `ambiguous option: ${arg} could match ${tuples.map((t) => t.optionString).join(", ")}`,
      );
    }
    if (tuples.length === 1) return tuples[0]!;
    if (NEGATIVE_NUMBER.test(arg)) return null; // no option of ours looks like a negative number
    if (arg.includes(" ")) return null;
    return { action: null, optionString: arg, explicitArg: null };
  }

  private convert(a: Action, s: string): unknown {
    if (a.parse) {
      try {
        return a.parse(s);
      } catch (e) {
        if (e instanceof ArgumentTypeError) throw new ArgumentError(a, e.message);
        throw e;
      }
    }
    if (a.type !== "int") return s;
    try {
      return parsePyInt(s);
    } catch (e) {
      if (e instanceof InvalidValue) throw new ArgumentError(a, e.message);
      throw e;
    }
  }

  private takeAction(a: Action, args: string[]): void {
    this.seen.add(a.dest);
    // argparse drops the first "--" from an option's values (`--output=--`).
    const dd = args.indexOf("--");
    if (dd >= 0) args.splice(dd, 1);
    let value: unknown;
    if (a.nargs === 0) value = undefined;
    else if (args.length === 0 && a.nargs === "?") value = a.const;
    else if (args.length === 1) {
      value = this.convert(a, args[0]!);
      if (a.choices && !a.choices.includes(value as string)) {
        throw new ArgumentError(
          a,
          `invalid choice: ${pyRepr(String(value))} (choose from ${a.choices.map(pyRepr).join(", ")})`,
        );
      }
    } else {
      // Only reachable with an explicit "--" value (`--output=--`, `-P--`):
      // argparse stores an empty list. We do the same so that error ordering
      // stays identical; the typed layer (args.ts) rejects it afterwards.
      value = [];
    }
    switch (a.kind) {
      case "help":
        throw new UsageExit(0, formatHelp(this.spec), "");
      case "version":
        throw new UsageExit(0, `${this.spec.version}\n`, "");
      case "store_true":
        this.values[a.dest] = true;
        break;
      case "store":
        this.values[a.dest] = value;
        break;
    }
  }

  private matchArgument(a: Action, start: number): number {
    if (a.nargs === 0) return 0;
    const next = this.pattern[start];
    if (a.nargs === "?") return next === "A" ? 1 : 0;
    if (next !== "A") throw new ArgumentError(a, "expected one argument");
    return 1;
  }

  /** The option at `startIndex` (and flags packed after it, `-nv`) with its value; returns the next index. */
  private consumeOptional(startIndex: number): number {
    const tuple = this.optionIndices.get(startIndex)!;
    let { action, optionString, explicitArg } = tuple;
    const pending: Array<[Action, string[]]> = [];
    let stop: number;
    for (;;) {
      if (action === null) {
        this.extras.push(this.argv[startIndex]!);
        return startIndex + 1;
      }
      if (explicitArg !== null) {
        const argCount = action.nargs === 0 ? 0 : 1;
        if (argCount === 0 && optionString[1] !== "-" && explicitArg !== "") {
          pending.push([action, []]);
          optionString = "-" + explicitArg[0];
          const rest = explicitArg.slice(1);
          const next = this.optionMap.get(optionString);
          if (next) {
            action = next;
            explicitArg = rest === "" ? null : rest;
          } else {
            throw new ArgumentError(action, `ignored explicit argument ${pyRepr(explicitArg)}`);
          }
        } else if (argCount === 1) {
          stop = startIndex + 1;
          pending.push([action, [explicitArg]]);
          break;
        } else {
          throw new ArgumentError(action, `ignored explicit argument ${pyRepr(explicitArg)}`);
        }
      } else {
        const start = startIndex + 1;
        const count = this.matchArgument(action, start);
        stop = start + count;
        pending.push([action, this.argv.slice(start, stop)]);
        break;
      }
    }
    for (const [a, args] of pending) this.takeAction(a, args);
    return stop;
  }
}
