#!/usr/bin/env node
// virtnbdbackup: back up a libvirt domain (see `--help`).
// The bundled command (npm run build; scripts/bundle.js), run by ./load-bundle.cjs. It keeps
// V8's young generation at its size once loaded (src/cli/young-generation.ts).
import { createRequire } from "node:module";

await createRequire(import.meta.url)("./load-bundle.cjs").runBundle("virtnbdbackup");
