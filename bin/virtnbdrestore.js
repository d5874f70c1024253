#!/usr/bin/env node
// virtnbdrestore: restore, dump or verify backup sets (see `--help`).
// The bundled command (npm run build); see scripts/bundle.js.
import "../dist/bin/virtnbdrestore.mjs";
