import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const ROOT = join(import.meta.dirname, "../..");

/** Largest new space (physical MiB) while short-lived objects are made and some survive a while, after `flags`. */
function newSpacePeak(flags: string | null): number {
  const script = `
    import v8 from "node:v8";
    ${flags === null ? "" : `v8.setFlagsFromString(${JSON.stringify(flags)});`}
    let keep = [], peak = 0;
    for (let i = 0; i < 2e6; i++) {
      keep.push({ i, a: [i] });
      if (keep.length > 20000) keep = [];
      if (i % 5000 === 0) for (const s of v8.getHeapSpaceStatistics()) if (s.space_name === "new_space") peak = Math.max(peak, s.physical_space_size);
    }
    console.log(peak / 1048576);`;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return Number(r.stdout.trim());
}

test("the data commands keep V8's young generation at its size once their bundle is loaded (restore: no optimizing compiler, set in the bin shim first)", () => {
  for (const cmd of ["virtnbdbackup", "virtnbdrestore"]) {
    const entry = readFileSync(join(ROOT, "src/cli/entries", `${cmd}.ts`), "utf8");
    const call = entry.indexOf("keepYoungGenerationSize();");
    assert.ok(call > 0, `${cmd}: its entry keeps the young generation's size`);
    // In the entry's body: after every import (evaluated first), before the command runs.
    assert.ok(call > entry.lastIndexOf("import ") && call < entry.indexOf("runCommand(main)"), `${cmd}: after the imports, before main`);
    const shim = readFileSync(join(ROOT, "bin", `${cmd}.js`), "utf8");
    const flags = [...shim.matchAll(/setFlagsFromString\("([^"]+)"\)/g)].map((m) => m[1]);
    assert.deepEqual(flags, cmd === "virtnbdrestore" ? ["--no-opt"] : [], `${cmd}: the shim's V8 flags`);
    assert.ok(shim.lastIndexOf("setFlagsFromString(") < shim.indexOf(`runBundle("${cmd}")`), `${cmd}: before the bundle is loaded`);
  }
  assert.match(readFileSync(join(ROOT, "src/cli/young-generation.ts"), "utf8"), /setFlagsFromString\("--semi-space-growth-factor=1"\)/);
  // The flag works when set at run time on this node (it is read whenever the space would grow).
  const small = newSpacePeak("--semi-space-growth-factor=1");
  const grown = newSpacePeak(null);
  assert.ok(small <= 2, `new space with the flag: ${small} MiB`);
  assert.ok(grown > 2 * small, `without it the new space grows (${grown} MiB): the test can tell`);
});
