// Runs a command's bundle (dist/bin/<command>.cjs, scripts/bundle.js) through V8's code cache
// (dist/bin/<command>.cache): the compiled code of the bundle's module set-up, written by the
// build, so a start deserializes it instead of parsing and compiling ~1 MB of JavaScript
// (50-60 ms of CPU per start here, README "Performance"). Node 20 keeps no code cache of ES
// modules, hence CommonJS bundles and vm.Script. A cache that does not fit (another node, other
// V8 flags, another bundle) is rejected by V8 and the bundle compiles as without one.
//
// VIRTNBD_WRITE_CODE_CACHE=1 (the build): evaluate the bundle, write its cache, start nothing.
// The cache is taken before the command runs: V8 flags a command sets while it runs (the young
// generation's growth) would make it unfit for the next start.
"use strict";
const { readFileSync, renameSync, writeFileSync } = require("node:fs");
const { dirname, join } = require("node:path");
const { Script } = require("node:vm");
const Module = require("node:module");

/**
 * Evaluates the CommonJS bundle `file` with the code cache `cacheFile` when it fits; returns its
 * exports, whether V8 took the cache, and the script (its cache can be taken from it).
 */
function loadBundle(file, cacheFile) {
  let cachedData;
  if (cacheFile) {
    try {
      cachedData = readFileSync(cacheFile);
    } catch {
      // no cache (a build without one): compiled as usual
    }
  }
  const script = new Script(Module.wrap(readFileSync(file, "utf8")), { filename: file, cachedData });
  const bundle = { exports: {} };
  script.runInThisContext()(bundle.exports, Module.createRequire(file), bundle, file, dirname(file));
  return { exports: bundle.exports, cacheTaken: cachedData !== undefined && !script.cachedDataRejected, script };
}

/** Evaluates `file` and writes its code cache to `cacheFile` (the build). */
function writeCodeCache(file, cacheFile) {
  const { script } = loadBundle(file, null);
  writeFileSync(`${cacheFile}.partial`, script.createCachedData());
  renameSync(`${cacheFile}.partial`, cacheFile);
}

/** Runs `command` (bin/<command>.js): its bundle through its cache, then its start(). */
function runBundle(command) {
  const dir = join(__dirname, "..", "dist", "bin");
  const file = join(dir, `${command}.cjs`);
  const cacheFile = join(dir, `${command}.cache`);
  if (process.env.VIRTNBD_WRITE_CODE_CACHE === "1") return Promise.resolve(writeCodeCache(file, cacheFile));
  return loadBundle(file, cacheFile).exports.start();
}

module.exports = { loadBundle, writeCodeCache, runBundle };
