/**
 * Shell completion of the four commands, generated from the parser declarations (./args.ts)
 * like the man pages: option names, the values of choice options, domain names from
 * `virsh list --all --name`, files and directories for path options. What an option's value
 * is comes from its commander placeholder (`<dir>`, `<file>`, `<files>`, `<domain>`), with a
 * few overrides below. `scripts/build-completion.js` writes the files to dist/completion/.
 */
import { parserSpec, type CommandName } from "./args.js";
import { actionsOf, expandHelp, type Action, type ParserSpec } from "./argparse.js";
import { PACKAGE_VERSION } from "../report/version.js";
import { MAN_CONTEXT } from "./man-page.js";

export const COMMANDS: readonly CommandName[] = ["virtnbdbackup", "virtnbdrestore", "virtnbdmap", "virtnbdprune"];

/** What the value of an option completes to. */
export interface ValueKind {
  /** `none`: nothing (a number, a name); `words`: only `words` */
  kind: "none" | "words" | "file" | "files" | "dir" | "domain" | "device";
  /** fixed words offered as well (choices, `dump`/`verify`) */
  words?: readonly string[];
}

/** Where the placeholder does not say it all. */
const OVERRIDES: Record<string, ValueKind> = {
  "virtnbdbackup --output": { kind: "dir", words: ["-"] },
  "virtnbdrestore --input": { kind: "file" }, // a directory, a zip, or a directory of zips
  "virtnbdrestore --output": { kind: "dir", words: ["dump", "verify"] },
  "virtnbdmap --device": { kind: "device" },
};

const PLACEHOLDER_KINDS: Record<string, ValueKind["kind"]> = {
  dir: "dir",
  file: "file",
  files: "files",
  domain: "domain",
};

/** The completion of an option's value; `null` for flags and `-z`'s optional level. */
export function valueKind(name: CommandName, spec: ParserSpec, a: Action): ValueKind | null {
  if (a.nargs !== 1) return null;
  if (a.choices) return { kind: "words", words: a.choices };
  const long = a.optionStrings.find((o) => o.startsWith("--")) ?? a.optionStrings[0]!;
  const override = OVERRIDES[`${name} ${long}`];
  if (override) return override;
  const option = spec.command.options.find((o) => (o.long ?? o.short) === long);
  const placeholder = /<(\w+)>/.exec(option?.flags ?? "")?.[1] ?? "";
  return { kind: PLACEHOLDER_KINDS[placeholder] ?? "none" };
}

function specOf(name: CommandName): ParserSpec {
  return parserSpec(name, MAN_CONTEXT);
}

// ---------------------------------------------------------------------- bash

/** A bash word in single quotes. */
function sq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function fnName(name: CommandName): string {
  return `_virtnbdbackup_ts_${name}`;
}

function bashValueCase(k: ValueKind): string {
  const words = k.words && k.words.length > 0 ? `_virtnbdbackup_ts_words ${sq(k.words.join(" "))}; ` : "";
  switch (k.kind) {
    case "none":
    case "words":
      return `${words}return 0`;
    case "file":
      return `${words}_virtnbdbackup_ts_paths -f; return 0`;
    case "files":
      return `${words}_virtnbdbackup_ts_paths -f ,; return 0`;
    case "dir":
      return `${words}_virtnbdbackup_ts_paths -d; return 0`;
    case "domain":
      return `${words}_virtnbdbackup_ts_domains; return 0`;
    case "device":
      return `${words}_virtnbdbackup_ts_devices; return 0`;
  }
}

/** Helpers shared by the three files; each file defines them, so each can be sourced alone. */
const BASH_HELPERS = String.raw`
# Offer the words of $1 that start with $cur.
_virtnbdbackup_ts_words() {
    local w
    for w in $1; do
        [[ $w == "$cur"* ]] && COMPREPLY+=("$pre$w")
    done
}

# Files (-f) or directories (-d) starting with $cur; with a second argument (a separator),
# only the part after the last separator is completed (comma-separated file lists).
_virtnbdbackup_ts_paths() {
    local kind=$1 sep=${"$"}{2-} head="" word=$cur line
    if [[ -n $sep && $word == *"$sep"* ]]; then
        head=${"$"}{word%"$sep"*}$sep
        word=${"$"}{word##*"$sep"}
    fi
    compopt -o filenames 2>/dev/null
    while IFS= read -r line; do
        COMPREPLY+=("$pre$head$line")
    done < <(compgen "$kind" -- "$word")
}

# Domain names from virsh (with the -U/--uri given so far); nothing when virsh fails.
_virtnbdbackup_ts_domains() {
    local -a ws args=()
    local i d
    read -r -a ws <<< "$COMP_LINE"
    for (( i = 1; i < ${"$"}{#ws[@]}; i++ )); do
        case ${"$"}{ws[i]} in
            -U | --uri) args=(-c "${"$"}{ws[i+1]}") ;;
            --uri=*) args=(-c "${"$"}{ws[i]#--uri=}") ;;
            -U?*) args=(-c "${"$"}{ws[i]#-U}") ;;
        esac
    done
    while IFS= read -r d; do
        [[ -n $d && $d == "$cur"* ]] && COMPREPLY+=("$pre$d")
    done < <(timeout 5 virsh "${"$"}{args[@]}" list --all --name 2>/dev/null)
}

# NBD devices (/dev/nbd*), else any file.
_virtnbdbackup_ts_devices() {
    local d
    for d in /dev/nbd*; do
        [[ -e $d && $d == "$cur"* ]] && COMPREPLY+=("$pre$d")
    done
    (( ${"$"}{#COMPREPLY[@]} )) || _virtnbdbackup_ts_paths -f
}
`;

/**
 * The bash completion of one command: a function `_virtnbdbackup_ts_<command>` registered with
 * `complete -F`. Safe to source more than once and next to the other two.
 */
export function bashCompletion(name: CommandName): string {
  const spec = specOf(name);
  const actions = actionsOf(spec);
  const all = actions.flatMap((a) => a.optionStrings);
  const longs = all.filter((o) => o.startsWith("--"));
  const cases: string[] = [];
  for (const a of actions) {
    const k = valueKind(name, spec, a);
    if (k === null) continue;
    cases.push(`        ${a.optionStrings.join(" | ")}) ${bashValueCase(k)} ;;`);
  }
  const fn = fnName(name);
  return `# bash completion for ${name} (virtnbdbackup-ts ${PACKAGE_VERSION})
# Generated by scripts/build-completion.js from src/cli/args.ts; do not edit.
# Install as /usr/share/bash-completion/completions/${name}, or source it.
${BASH_HELPERS}
${fn}() {
    local cur="${"$"}{COMP_WORDS[COMP_CWORD]}" prev="" pre=""
    (( COMP_CWORD > 0 )) && prev="${"$"}{COMP_WORDS[COMP_CWORD-1]}"
    COMPREPLY=()
    # --option=value: readline splits the word at "=" (COMP_WORDBREAKS), or it does not
    if [[ $cur == "=" ]]; then
        cur=""
    elif [[ $prev == "=" ]] && (( COMP_CWORD > 1 )); then
        prev=${"$"}{COMP_WORDS[COMP_CWORD-2]}
    elif [[ $cur == --*=* ]]; then
        prev=${"$"}{cur%%=*}
        pre=$prev=
        cur=${"$"}{cur#*=}
    fi
    # a long option may be shortened to an unambiguous prefix (argparse)
    if [[ $prev == --?* ]]; then
        local o match="" n=0
        for o in ${longs.join(" ")}; do
            if [[ $o == "$prev" ]]; then
                match=$o n=1
                break
            fi
            [[ $o == "$prev"* ]] && match=$o && (( n++ ))
        done
        (( n == 1 )) && prev=$match
    fi
    case $prev in
${cases.join("\n")}
    esac
    [[ -n $pre ]] && return 0
    if [[ -z $cur || $cur == -* ]]; then
        _virtnbdbackup_ts_words ${sq(all.join(" "))}
    fi${spec.positional ? `
    # ${spec.positional.metavar}: files and folders
    [[ $cur == -* ]] || _virtnbdbackup_ts_paths -f` : ""}
    return 0
}
complete -F ${fn} ${name}
`;
}

// ----------------------------------------------------------------------- zsh

/** An option's description in an `_arguments` spec in single quotes: `]` and `'` quoted. */
function zshDescription(s: string): string {
  return s.replace(/\]/g, "\\]").replace(/'/g, `'\\''`);
}

/** An `_arguments` action (no quotes, no colons in it). */
function zshAction(k: ValueKind): string {
  switch (k.kind) {
    case "none":
      return " ";
    case "words":
      return `(${(k.words ?? []).join(" ")})`;
    case "file":
    case "files":
      return "_files";
    case "dir":
      return "_files -/";
    case "domain":
      return "_virtnbdbackup_ts_domains";
    case "device":
      return "_files";
  }
}

/** The zsh completion of one command (`#compdef`), for a directory in `$fpath` as `_<command>`. */
export function zshCompletion(name: CommandName): string {
  const spec = specOf(name);
  const prog = spec.prog ?? name;
  const specs: string[] = [];
  for (const a of actionsOf(spec)) {
    const k = valueKind(name, spec, a);
    const help = zshDescription(expandHelp(a, prog).replace(/\s+/g, " ").trim());
    const excl = a.optionStrings.length > 1 ? `(${a.optionStrings.join(" ")})` : "";
    const suffix = (o: string): string => (k === null ? "" : o.startsWith("--") ? "=" : "+");
    const names = a.optionStrings.map((o) => `${o}${suffix(o)}`);
    const flags = names.length > 1 ? `{${names.join(",")}}` : names[0]!;
    const value = k === null ? "" : `:${a.dest.replace(/_/g, " ")}:${zshAction(k)}`;
    specs.push(`    ${excl ? `'${excl}'` : ""}${flags}'[${help}]${value}'`);
  }
  if (spec.positional) specs.push(`    '*:${spec.positional.metavar.toLowerCase()}:_files'`);
  return `#compdef ${name}
# zsh completion for ${name} (virtnbdbackup-ts ${PACKAGE_VERSION})
# Generated by scripts/build-completion.js from src/cli/args.ts; do not edit.

_virtnbdbackup_ts_domains() {
  local -a domains
  domains=(\${(f)"$(virsh list --all --name 2>/dev/null)"})
  _describe -t domains domain domains
}

_arguments -S \\
${specs.join(" \\\n")}
`;
}

/** File names under dist/completion. */
export const COMPLETION_FILES: ReadonlyArray<{ name: CommandName; shell: "bash" | "zsh"; file: string }> = COMMANDS.flatMap(
  (name) => [
    { name, shell: "bash" as const, file: `bash/${name}` },
    { name, shell: "zsh" as const, file: `zsh/_${name}` },
  ],
);
