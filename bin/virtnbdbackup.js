#!/usr/bin/env node
// virtnbdbackup: back up a libvirt domain (see `--help`).
// The bundled command (npm run build); see scripts/bundle.js. It keeps V8's young generation
// at its size once loaded (src/cli/young-generation.ts).
await import("../dist/bin/virtnbdbackup.mjs");
