/**
 * bin/load-bundle.cjs: a CommonJS bundle evaluated through its V8 code cache. The cache written
 * after evaluation is taken by the next load; one that does not fit (another bundle) is not, and
 * the bundle still runs.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { tempDir } from "../helpers/tmp.js";

const LOADER = join(import.meta.dirname, "../../bin/load-bundle.cjs");

/** Loads `file` with `cache` in a fresh process (a code cache is per isolate): what it reports. */
function load(file: string, cache: string, write = false): { cacheTaken: boolean; started: string } {
  const script = `
    const l = require(${JSON.stringify(LOADER)});
    if (${write}) { l.writeCodeCache(${JSON.stringify(file)}, ${JSON.stringify(cache)}); process.exit(0); }
    const { exports, cacheTaken } = l.loadBundle(${JSON.stringify(file)}, ${JSON.stringify(cache)});
    exports.start().then((v) => console.log(JSON.stringify({ cacheTaken, started: v })));`;
  const r = spawnSync(process.execPath, ["-e", script], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return write ? { cacheTaken: false, started: "" } : (JSON.parse(r.stdout) as { cacheTaken: boolean; started: string });
}

test("a bundle runs through the code cache written after evaluating it; another bundle's cache is not taken, and it still runs", async (t) => {
  const dir = await tempDir(t);
  const body = (name: string) =>
    `"use strict";\nconst path = require("node:path");\nconst big = Array.from({ length: 2000 }, (_, i) => i * 2);\nfunction start() { return Promise.resolve(${JSON.stringify(name)} + ":" + path.basename(__filename) + ":" + big.length); }\nmodule.exports = { start };\n`;
  const a = join(dir, "a.cjs");
  const b = join(dir, "b.cjs");
  await writeFile(a, body("a"));
  await writeFile(b, body("b") + "// another bundle\n");
  const cache = join(dir, "a.cache");
  assert.deepEqual(load(a, join(dir, "none.cache")), { cacheTaken: false, started: "a:a.cjs:2000" }, "no cache yet");
  load(a, cache, true);
  assert.deepEqual(load(a, cache), { cacheTaken: true, started: "a:a.cjs:2000" }, "its own cache");
  assert.deepEqual(load(b, cache), { cacheTaken: false, started: "b:b.cjs:2000" }, "a cache of other code is rejected");
});

test("the bundle's xmldom builds its HTML entity table on first use only, and parses XML and HTML entities as before", async (t) => {
  const dir = await tempDir(t);
  const { build } = await import("esbuild");
  // @ts-expect-error: a plain ES module of the build scripts, no types
  const { xmldomLazyHtmlEntities } = (await import("../../scripts/xmldom-lazy-entities.js")) as { xmldomLazyHtmlEntities: import("esbuild").Plugin };
  const entry = join(dir, "entry.cjs");
  await writeFile(
    entry,
    `const entities = require("@xmldom/xmldom/lib/entities.js");
     const lazy = typeof Object.getOwnPropertyDescriptor(entities, "HTML_ENTITIES").get === "function";
     const { DOMParser } = require("@xmldom/xmldom");
     const xml = new DOMParser().parseFromString("<a>&amp;&lt;&#233;</a>", "text/xml").documentElement.textContent;
     const html = new DOMParser().parseFromString("<p>&eacute;&nbsp;</p>", "text/html").getElementsByTagName("p")[0].textContent;
     console.log(JSON.stringify({ lazy, xml, html, same: entities.entityMap === entities.HTML_ENTITIES, frozen: Object.isFrozen(entities.HTML_ENTITIES) }));`,
  );
  const out = join(dir, "bundle.cjs");
  await build({ entryPoints: [entry], outfile: out, bundle: true, platform: "node", format: "cjs", nodePaths: [join(import.meta.dirname, "../../node_modules")], plugins: [xmldomLazyHtmlEntities], logLevel: "silent" });
  const r = spawnSync(process.execPath, [out], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { lazy: true, xml: "&<é", html: "é\u00a0", same: true, frozen: true });
});
