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

test("bin shims of the data commands keep V8's young generation at its first size (restore: no optimizing compiler), set before the bundle loads", () => {
  for (const [cmd, want] of [
    ["virtnbdbackup", ["--semi-space-growth-factor=1"]],
    ["virtnbdrestore", ["--semi-space-growth-factor=1", "--no-opt"]],
  ] as const) {
    const shim = readFileSync(join(ROOT, "bin", `${cmd}.js`), "utf8");
    const flags = [...shim.matchAll(/setFlagsFromString\("([^"]+)"\)/g)].map((m) => m[1]);
    assert.deepEqual(flags, want, `${cmd}: its V8 flags`);
    assert.ok(shim.lastIndexOf("setFlagsFromString(") < shim.indexOf(`import("../dist/bin/${cmd}.mjs")`), `${cmd}: before the bundle is imported`);
  }
  // The flag works when set at run time on this node (it is read whenever the space would grow).
  const small = newSpacePeak("--semi-space-growth-factor=1");
  const grown = newSpacePeak(null);
  assert.ok(small <= 2, `new space with the flag: ${small} MiB`);
  assert.ok(grown > 2 * small, `without it the new space grows (${grown} MiB): the test can tell`);
});
