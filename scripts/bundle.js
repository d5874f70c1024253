#!/usr/bin/env node
// Bundles each command into one ES module (dist/bin/<command>.mjs): Node then loads one file
// instead of ~200 modules, which halves the start-up time (0.40 s → 0.2 s for `--help` here).
// yazl stays a separate package: storage/yazl-fast-crc.ts patches the crc32 module it loads.
// Code shared by the commands and what they load on demand (the S3 SDK, only for s3:// paths)
// goes into dist/bin/chunk-*.mjs: a command that writes to a directory never parses the SDK.
import { readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";

const root = new URL("..", import.meta.url).pathname;
// Chunk names are content hashes: the last build's would stay beside the new ones (and be packed).
const out = join(root, "dist/bin");
try {
  for (const f of readdirSync(out)) if (/\.mjs(\.map)?$/.test(f)) rmSync(join(out, f));
} catch (e) {
  if (e.code !== "ENOENT") throw e;
}
await build({
  absWorkingDir: root,
  entryPoints: ["virtnbdbackup", "virtnbdrestore", "virtnbdmap", "virtnbdprune"].map((n) => ({ in: `src/cli/entries/${n}.ts`, out: n })),
  outdir: "dist/bin",
  outExtension: { ".js": ".mjs" },
  bundle: true,
  platform: "node",
  format: "esm",
  splitting: true,
  chunkNames: "chunk-[hash]",
  target: "node20",
  external: ["yazl"],
  // CommonJS dependencies call require(); an ES module has none of its own.
  banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
  sourcemap: "linked",
  logLevel: "warning",
});
