#!/usr/bin/env node
// The npm package's install step (package.json "install"): makes sure the native addon loads.
// 1. The prebuilt addon shipped in the tarball (src/native/prebuilds/<platform>-<arch>/, a
//    Node-API addon: one build serves every Node version) is used when it loads here.
// 2. Otherwise (another platform or arch, a shared library missing or of another soname), or
//    with `npm install --build-from-source`, node-gyp builds it from src/native into
//    src/native/build/Release, which the loader (src/native/index.ts) tries first.
// node-gyp gets --nodedir pointing at the headers of the Node that runs it, when they are
// installed beside it (Debian: /usr/include/node from nodejs or libnode-dev), so nothing is
// downloaded. In a source checkout (`npm ci` in the project itself) this does nothing:
// `npm run build` builds the addon there.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const nativeDir = join(root, "src/native");
const built = join(nativeDir, "build/Release/virtnbd.node");
const prebuilt = join(nativeDir, "prebuilds", `${process.platform}-${process.arch}`, "virtnbd.node");

const say = (msg) => console.error(`virtnbdbackup-ts: ${msg}`);

/** Loads the addon in a child process (a failing dlopen must not end this one); null when it loads. */
function loadError(path) {
  if (!existsSync(path)) return "not there";
  const r = spawnSync(process.execPath, ["-e", `require(${JSON.stringify(path)})`], { encoding: "utf8" });
  return r.status === 0 ? null : (r.stderr.split("\n").find((l) => /Error/.test(l)) ?? `exit ${r.status}`).trim();
}

/** The install prefix whose include/node/node.h matches the running Node, if any. */
function nodeDir() {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  for (const dir of [resolve(dirname(process.execPath), ".."), "/usr", "/usr/local"]) {
    if (existsSync(join(dir, "include/node/node.h"))) return dir;
  }
  return null;
}

if (process.env.INIT_CWD && resolve(process.env.INIT_CWD) === root) process.exit(0);

const fromSource = /^(true|1|yes)$/i.test(process.env.npm_config_build_from_source ?? "");
if (!fromSource) {
  const why = loadError(prebuilt);
  if (why === null) process.exit(0);
  say(`prebuilt addon ${why === "not there" ? `for ${process.platform}-${process.arch} not in the package` : `does not load (${why})`}; building it from source`);
}

const require = createRequire(import.meta.url);
let nodeGyp;
try {
  nodeGyp = require.resolve("node-gyp/bin/node-gyp.js");
} catch {
  say("node-gyp is not installed (an optional dependency): cannot build the native addon");
  process.exit(1);
}
const dir = nodeDir();
if (!dir) say(`no Node headers found beside ${process.execPath} (Debian: apt install libnode-dev); node-gyp will try to download them`);
const args = [nodeGyp, "rebuild", ...(dir ? [`--nodedir=${dir}`] : [])];
const r = spawnSync(process.execPath, args, { cwd: nativeDir, stdio: "inherit" });
const why = r.status === 0 ? loadError(built) : `node-gyp exited ${r.status ?? r.signal}`;
if (why !== null) {
  say(`building the native addon failed (${why}). It needs a C++ toolchain, pkg-config and the ` +
    "development packages of libvirt, lz4, libdeflate, zlib and xxhash " +
    "(Debian: build-essential pkg-config libvirt-dev liblz4-dev libdeflate-dev zlib1g-dev libxxhash-dev)");
  process.exit(1);
}
