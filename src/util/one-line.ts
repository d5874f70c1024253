/** Error text for a log line: tool output with several lines (qemu-img, qemu-nbd) joined by "; ". */
export function oneLine(text: string): string {
  return [...new Set(text.split(/\r?\n/).map((l) => l.trim()).filter(Boolean))].join("; ");
}
