/**
 * What systemd would run for a service unit, without systemd: on this machine systemd is not
 * PID 1 (no `systemctl start`, no `systemd-run`), and libvirtd is not one of its units. The
 * tests read our unit files with this small reader and run the command lines themselves.
 *
 *   const unit = readUnit(text);                                  // sections → [key, value][]
 *   const env = serviceEnvironment(unit, "web", readFile);        // Environment=, EnvironmentFile=
 *   const lines = execStartLines(unit, "web", env);               // argv per ExecStart=
 *
 * The subset of systemd.unit(5), systemd.exec(5) and systemd.service(5) our units use:
 * comments, line continuations, repeated keys; the specifiers %i, %I, %n, %N, %p and %%;
 * `Environment=` with quoted assignments; `EnvironmentFile=` (KEY=VALUE, `#` comments, single
 * or double quotes, a missing file fails unless the path starts with `-`); ExecStart= words:
 * quotes, `${VAR}` (one word, exactly the value), `$VAR` as a word of its own (the value split
 * at whitespace: zero or more words), `$$` (a literal `$`), and the prefixes `-@:+!`. Anything
 * else throws, so a unit using more than this is noticed rather than misread.
 */

export type Unit = Map<string, [string, string][]>;

/** The sections of a unit file, each a list of its assignments in order. */
export function readUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: [string, string][] | null = null;
  const lines = text.replace(/\\\n/g, " ").split("\n");
  for (const raw of lines) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const head = /^\[(.+)\]$/.exec(line);
    if (head) {
      section = [];
      unit.set(head[1]!, section);
      continue;
    }
    const eq = line.indexOf("=");
    if (section === null || eq < 1) throw new Error(`unit file: cannot read line [${line}]`);
    section.push([line.slice(0, eq).trim(), line.slice(eq + 1).trim()]);
  }
  return unit;
}

/** Every value of `key` in `section`, in order. */
export function values(unit: Unit, section: string, key: string): string[] {
  return (unit.get(section) ?? []).filter(([k]) => k === key).map(([, v]) => v);
}

/** systemd's unescaping of an instance name (`systemd-escape --unescape`): `\xNN` and `-` → `/`. */
export function unescapeInstance(instance: string): string {
  return instance.replace(/-/g, "/").replace(/\\x([0-9a-fA-F]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
}

/** The specifiers of a template instantiated as `<prefix>@<instance>.service`. */
export function expandSpecifiers(text: string, prefix: string, instance: string): string {
  return text.replace(/%(.)/g, (_m, c: string) => {
    switch (c) {
      case "i":
        return instance;
      case "I":
        return unescapeInstance(instance);
      case "p":
        return prefix;
      case "n":
        return `${prefix}@${instance}.service`;
      case "N":
        return `${prefix}@${instance}`;
      case "%":
        return "%";
      default:
        throw new Error(`unit file: specifier %${c} not supported by this reader`);
    }
  });
}

/** Shell-like words of `text`: quotes removed, backslash escapes inside double quotes. */
function quotedWords(text: string): { word: string; quoted: boolean }[] {
  const words: { word: string; quoted: boolean }[] = [];
  let i = 0;
  while (i < text.length) {
    while (i < text.length && /\s/.test(text[i]!)) i++;
    if (i >= text.length) break;
    let word = "";
    let quoted = false;
    while (i < text.length && !/\s/.test(text[i]!)) {
      const c = text[i]!;
      if (c === "'" || c === '"') {
        const end = text.indexOf(c, i + 1);
        if (end < 0) throw new Error(`unit file: unbalanced quote in [${text}]`);
        word += text.slice(i + 1, end).replace(/\\(.)/g, "$1");
        quoted = true;
        i = end + 1;
      } else {
        word += c === "\\" && i + 1 < text.length ? text[++i]! : c;
        i++;
      }
    }
    words.push({ word, quoted });
  }
  return words;
}

/** `Environment=` assignments (several per line, quoted ones may hold spaces). */
function environmentAssignments(value: string): [string, string][] {
  return quotedWords(value).map(({ word }) => {
    const eq = word.indexOf("=");
    if (eq < 1) throw new Error(`unit file: bad Environment= assignment [${word}]`);
    return [word.slice(0, eq), word.slice(eq + 1)];
  });
}

/** An environment file as systemd reads it: KEY=VALUE lines, quotes removed, comments skipped. */
export function readEnvironmentFile(text: string): [string, string][] {
  const out: [string, string][] = [];
  for (const raw of text.replace(/\\\n/g, "").split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const m = /^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) throw new Error(`environment file: cannot read line [${line}]`);
    let value = m[2]!;
    const q = /^(["'])(.*)\1$/.exec(value);
    if (q) value = q[1] === '"' ? q[2]!.replace(/\\(["\\`$])/g, "$1") : q[2]!;
    out.push([m[1]!, value]);
  }
  return out;
}

/**
 * The environment of the service's commands: `Environment=` lines, then the
 * `EnvironmentFile=` files in order (later assignments win, as in systemd).
 */
export function serviceEnvironment(unit: Unit, prefix: string, instance: string, readFile: (path: string) => string | null): Record<string, string> {
  const env: Record<string, string> = {};
  for (const v of values(unit, "Service", "Environment")) {
    for (const [k, val] of environmentAssignments(expandSpecifiers(v, prefix, instance))) env[k] = val;
  }
  for (const v of values(unit, "Service", "EnvironmentFile")) {
    const optional = v.startsWith("-");
    const path = expandSpecifiers(optional ? v.slice(1) : v, prefix, instance);
    const text = readFile(path);
    if (text === null) {
      if (optional) continue;
      throw new Error(`EnvironmentFile [${path}] is missing: the unit would fail`);
    }
    for (const [k, val] of readEnvironmentFile(text)) env[k] = val;
  }
  return env;
}

export interface ExecLine {
  argv: string[];
  /** `-` prefix: a failure does not fail the unit. */
  ignoreFailure: boolean;
}

/** One ExecStart= value as the argv systemd would exec. */
export function expandExecLine(value: string, prefix: string, instance: string, env: Record<string, string>): ExecLine {
  const m = /^([-@:+!]*)(.*)$/.exec(expandSpecifiers(value, prefix, instance))!;
  if (/[@:+!]/.test(m[1]!)) throw new Error(`unit file: ExecStart prefix [${m[1]}] not supported by this reader`);
  const argv: string[] = [];
  for (const { word, quoted } of quotedWords(m[2]!)) {
    const whole = /^\$([A-Za-z_][A-Za-z0-9_]*)$/.exec(word);
    if (whole && !quoted) {
      argv.push(...(env[whole[1]!] ?? "").split(/\s+/).filter((w) => w !== ""));
      continue;
    }
    argv.push(
      word.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (s, braced: string | undefined, bare: string | undefined) => {
        if (s === "$$") return "$";
        if (braced !== undefined) return env[braced] ?? "";
        throw new Error(`unit file: $${bare} inside a word is not substituted by systemd: use \${${bare}}`);
      }),
    );
  }
  return { argv, ignoreFailure: m[1]!.includes("-") };
}

/** Every ExecStart= of the service, expanded. */
export function execStartLines(unit: Unit, prefix: string, instance: string, env: Record<string, string>): ExecLine[] {
  return values(unit, "Service", "ExecStart").map((v) => expandExecLine(v, prefix, instance, env));
}

/** Exit codes the unit counts as success: 0 and `SuccessExitStatus=`. */
export function successExitCodes(unit: Unit): Set<number> {
  const codes = new Set([0]);
  for (const v of values(unit, "Service", "SuccessExitStatus")) {
    for (const w of v.split(/\s+/)) if (/^\d+$/.test(w)) codes.add(Number(w));
  }
  return codes;
}
