/** `--hexdump`: served data as `hexdump -C`-style lines (for the nbdkit log). */

/** Lines for `data` read at disk offset `offset`, with a header line. */
export function hexdump(offset: number, data: Uint8Array): string {
  const lines = [`read offset=${offset} count=${data.length}`];
  for (let i = 0; i < data.length; i += 16) {
    const row = data.subarray(i, Math.min(i + 16, data.length));
    let hex = "";
    let text = "";
    for (let j = 0; j < 16; j++) {
      if (j === 8) hex += " ";
      if (j < row.length) {
        const b = row[j]!;
        hex += b.toString(16).padStart(2, "0") + " ";
        text += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".";
      } else hex += "   ";
    }
    lines.push(`${(offset + i).toString(16).padStart(12, "0")}  ${hex} |${text}|`);
  }
  return lines.join("\n") + "\n";
}
