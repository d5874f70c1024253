#!/usr/bin/env node
// `npm pack` (prepack), after `npm run build`: copies the addon just built into
// src/native/prebuilds/<platform>-<arch>/virtnbd.node, where the npm package ships it and the
// loader (src/native/index.ts) finds it when nothing was built at install time.
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";

const native = join(new URL("..", import.meta.url).pathname, "src/native");
const dir = join(native, "prebuilds");
rmSync(dir, { recursive: true, force: true });
mkdirSync(join(dir, `${process.platform}-${process.arch}`), { recursive: true });
copyFileSync(join(native, "build/Release/virtnbd.node"), join(dir, `${process.platform}-${process.arch}`, "virtnbd.node"));
