#!/usr/bin/env node
// virtnbdmap: serve a backup chain through nbdkit / map it to /dev/nbdX (see `--help`).
// The bundled command (npm run build); see scripts/bundle.js.
import "../dist/bin/virtnbdmap.mjs";
