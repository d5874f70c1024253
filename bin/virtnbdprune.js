#!/usr/bin/env node
// virtnbdprune: remove old backup chains by keep rules (see `--help`).
// The bundled command (npm run build; scripts/bundle.js), run by ./load-bundle.cjs.
import { createRequire } from "node:module";

await createRequire(import.meta.url)("./load-bundle.cjs").runBundle("virtnbdprune");
