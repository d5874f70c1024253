/** Python's `repr` and `pprint.pformat` for the flat dicts the tools print (stream metadata). */

export function pyRepr(v: unknown): string {
  if (v === null || v === undefined) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(v);
  if (typeof v === "string") {
    const quote = v.includes("'") && !v.includes('"') ? '"' : "'";
    let out = quote;
    for (const ch of v) {
      const c = ch.codePointAt(0)!;
      if (ch === quote || ch === "\\") out += "\\" + ch;
      else if (ch === "\n") out += "\\n";
      else if (ch === "\r") out += "\\r";
      else if (ch === "\t") out += "\\t";
      else if (c < 0x20 || c === 0x7f) out += "\\x" + c.toString(16).padStart(2, "0");
      else out += ch;
    }
    return out + quote;
  }
  if (Array.isArray(v)) return `[${v.map(pyRepr).join(", ")}]`;
  if (typeof v === "object") {
    return `{${Object.entries(v as Record<string, unknown>).map(([k, x]) => `${pyRepr(k)}: ${pyRepr(x)}`).join(", ")}}`;
  }
  return String(v);
}

/** `pprint.pformat(d)` (width 80, sorted keys) for a dict of scalar values. */
export function pyPrettyDict(d: Record<string, unknown>): string {
  const keys = Object.keys(d).sort();
  const sorted = Object.fromEntries(keys.map((k) => [k, d[k]]));
  const oneLine = pyRepr(sorted);
  if (oneLine.length <= 80) return oneLine;
  return "{" + keys.map((k) => `${pyRepr(k)}: ${pyRepr(d[k])}`).join(",\n ") + "}";
}
