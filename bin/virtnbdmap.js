#!/usr/bin/env node
// virtnbdmap: serve a backup chain through nbdkit / map it to /dev/nbdX (see `--help`).
// The bundled command (npm run build; scripts/bundle.js), run by ./load-bundle.cjs.
import { createRequire } from "node:module";

await createRequire(import.meta.url)("./load-bundle.cjs").runBundle("virtnbdmap");
