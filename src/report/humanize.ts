/**
 * Small formatting helpers that reproduce Python's output for the values the
 * original tools print: `humanize()` (docs/cli.md, "Sizes (humanize)"), `repr()` of strings (used
 * by argparse messages and some log lines) and `str()` of simple values.
 */

const UNITS = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi"] as const;

/**
 * Round a finite number to `digits` decimals like Python's `format(x, ".Nf")`:
 * the exact binary value is rounded, an exact tie goes to the even digit
 * (JavaScript's `toFixed` would round a tie up: 1.25 → "1.3", Python "1.2").
 */
export function pyFixed(x: number, digits: number): string {
  if (!Number.isFinite(x)) {
    if (Number.isNaN(x)) return "nan";
    return x > 0 ? "inf" : "-inf";
  }
  const negative = x < 0 || Object.is(x, -0);
  // toFixed(100) prints the exact decimal expansion of every double whose
  // fractional part needs at most 100 digits (all values humanize() sees).
  const ax = Math.abs(x);
  // toFixed switches to exponent notation from 1e21 on; such doubles are
  // integers, so BigInt prints them exactly.
  const exact = ax >= 1e21 ? `${BigInt(ax).toString()}.${"0".repeat(100)}` : ax.toFixed(100);
  const dot = exact.indexOf(".");
  const intPart = exact.slice(0, dot);
  const frac = exact.slice(dot + 1);
  const kept = frac.slice(0, digits);
  const rest = frac.slice(digits);
  let digitsStr = intPart + kept;
  const first = rest.charCodeAt(0) - 48;
  const tail = rest.slice(1);
  let roundUp = false;
  if (first > 5) roundUp = true;
  else if (first === 5) {
    if (/[1-9]/.test(tail)) roundUp = true;
    else {
      const lastDigit = digitsStr.charCodeAt(digitsStr.length - 1) - 48;
      roundUp = lastDigit % 2 === 1;
    }
  }
  if (roundUp) {
    const chars = digitsStr.split("");
    let i = chars.length - 1;
    for (; i >= 0; i--) {
      if (chars[i] === "9") chars[i] = "0";
      else {
        chars[i] = String.fromCharCode(chars[i]!.charCodeAt(0) + 1);
        break;
      }
    }
    digitsStr = (i < 0 ? "1" : "") + chars.join("");
  }
  const intLen = digitsStr.length - digits;
  const out = digits > 0 ? `${digitsStr.slice(0, intLen)}.${digitsStr.slice(intLen)}` : digitsStr;
  return (negative ? "-" : "") + out;
}

/**
 * Size in human readable form, as upstream's `humanize()`: divide by 1024
 * through `"" Ki Mi Gi Ti Pi Ei Zi` (then `Yi`), one decimal place, suffix `B`.
 * `humanize(0)` → `0.0B`, `humanize(65536)` → `64.0KiB`.
 */
export function humanize(num: number, suffix = "B"): string {
  let n = num;
  for (const unit of UNITS) {
    if (Math.abs(n) < 1024.0) return `${pyFixed(n, 1)}${unit}${suffix}`;
    n /= 1024.0;
  }
  return `${pyFixed(n, 1)}Yi${suffix}`;
}

/** Python's `str.isprintable()` for one code point (close approximation). */
function isPrintable(ch: string): boolean {
  if (ch === " ") return true;
  return !/^[\p{C}\p{Z}]$/u.test(ch);
}

/** Python's `repr()` of a `str`: quote choice and escapes as CPython does. */
export function pyRepr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    if (ch === quote || ch === "\\") out += "\\" + ch;
    else if (ch === "\t") out += "\\t";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (!isPrintable(ch)) {
      const cp = ch.codePointAt(0)!;
      if (cp < 0x100) out += "\\x" + cp.toString(16).padStart(2, "0");
      else if (cp < 0x10000) out += "\\u" + cp.toString(16).padStart(4, "0");
      else out += "\\U" + cp.toString(16).padStart(8, "0");
    } else out += ch;
  }
  return out + quote;
}

/**
 * Python's `str()` of a simple value as argparse's `%(default)s` and the log
 * lines show it: `true` → `True`, `null`/`undefined` → `None`, arrays as lists
 * of reprs (`['a', 'b']`), numbers as Python prints ints and floats.
 */
export function pyStr(v: unknown): string {
  if (v === null || v === undefined) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  if (typeof v === "number") {
    if (Number.isInteger(v)) return String(v);
    if (!Number.isFinite(v)) return Number.isNaN(v) ? "nan" : v > 0 ? "inf" : "-inf";
    return String(v);
  }
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "string") return v;
  if (Array.isArray(v)) return `[${v.map(pyReprValue).join(", ")}]`;
  return String(v);
}

/** Python's `repr()` of a simple value (strings quoted, others like pyStr). */
export function pyReprValue(v: unknown): string {
  return typeof v === "string" ? pyRepr(v) : pyStr(v);
}

/** Seconds as `MM:SS`, or `H:MM:SS` from one hour on (tqdm's style). */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "??:??";
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const mm = String(m).padStart(2, "0");
  const ss = String(sec).padStart(2, "0");
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}
