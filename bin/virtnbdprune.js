#!/usr/bin/env node
// virtnbdprune: remove old backup chains by keep rules (see `--help`).
// The bundled command (npm run build); see scripts/bundle.js.
import "../dist/bin/virtnbdprune.mjs";
