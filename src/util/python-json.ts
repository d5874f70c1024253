/**
 * JSON text exactly as Python's `json.dumps` writes it (ensure_ascii, default separators),
 * with or without `indent`. The backup set's JSON files (stream metadata, compression trailer,
 * `<dom>.cpt`, dump output) are compared byte for byte with the original's.
 */
export type PyJson = null | boolean | number | string | PyJson[] | { [key: string]: PyJson };

function pyString(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += "\\\\";
    else if (c === 0x0a) out += "\\n";
    else if (c === 0x0d) out += "\\r";
    else if (c === 0x09) out += "\\t";
    else if (c === 0x08) out += "\\b";
    else if (c === 0x0c) out += "\\f";
    else if (c < 0x20 || c > 0x7e) out += "\\u" + c.toString(16).padStart(4, "0");
    else out += s[i];
  }
  return out + '"';
}

function pyNumber(n: number): string {
  if (!Number.isFinite(n)) return n > 0 ? "Infinity" : n < 0 ? "-Infinity" : "NaN";
  if (Number.isInteger(n)) return String(n);
  // Python's float repr; JS gives the same shortest round-trip digits, mostly with different exponent style.
  const s = String(n);
  return s.includes("e") ? s.replace(/e([+-])(\d)$/, "e$10$2") : s;
}

function dumps(value: PyJson, indent: number | undefined, level: number): string {
  if (value === null) return "null";
  if (value === true) return "true";
  if (value === false) return "false";
  if (typeof value === "number") return pyNumber(value);
  if (typeof value === "string") return pyString(value);
  const isArray = Array.isArray(value);
  const items: string[] = isArray
    ? (value as PyJson[]).map((v) => dumps(v, indent, level + 1))
    : Object.entries(value as Record<string, PyJson>).map(([k, v]) => `${pyString(k)}: ${dumps(v, indent, level + 1)}`);
  const [open, close] = isArray ? ["[", "]"] : ["{", "}"];
  if (items.length === 0) return open + close;
  if (indent === undefined) return open + items.join(", ") + close;
  const pad = "\n" + " ".repeat(indent * (level + 1));
  return open + pad + items.join("," + pad) + "\n" + " ".repeat(indent * level) + close;
}

/** `json.dumps(value)` or `json.dumps(value, indent=N)`. */
export function pythonJsonDumps(value: PyJson, indent?: number): string {
  return dumps(value, indent, 0);
}
