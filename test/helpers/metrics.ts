import assert from "node:assert/strict";

/** The text exposition format, as node_exporter's textfile collector parses it (no timestamps). */
export function checkExposition(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  const typed = new Set<string>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const help = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$/.exec(line);
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (gauge|counter|untyped)$/.exec(line);
    if (help) continue;
    if (type) {
      assert.ok(!typed.has(type[1]!), `one TYPE line per family: ${type[1]}`);
      typed.add(type[1]!);
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*)\} (-?[0-9.e+]+)$/.exec(line);
    assert.ok(sample, `a sample line: ${line}`);
    assert.ok(typed.has(sample[1]!), `${sample[1]} has its TYPE before its samples`);
    samples.set(sample[1]!, Number(sample[3]));
  }
  return samples;
}
