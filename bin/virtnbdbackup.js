#!/usr/bin/env node
// virtnbdbackup: back up a libvirt domain (see `--help`).
// The bundled command (npm run build); see scripts/bundle.js.
import "../dist/bin/virtnbdbackup.mjs";
