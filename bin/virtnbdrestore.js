#!/usr/bin/env node
// virtnbdrestore: restore, dump or verify backup sets (see `--help`).
// The bundled command (npm run build; scripts/bundle.js), run by ./load-bundle.cjs.
import { createRequire } from "node:module";
import { setFlagsFromString } from "node:v8";

// No optimizing compiler (TurboFan), set before the bundle loads: the first function it optimizes brings in ~4 MiB of
// its own code and ~6 MiB of compiler memory for good, while a restore's own work is native
// (qemu-img, lz4, reads); it peaked 9-12 MiB lower, lz4 restores as fast, chains served by our
// NBD server ~10 % more CPU (README, "Where the memory goes"). The bundle keeps V8's young
// generation at its size once loaded (src/cli/young-generation.ts).
setFlagsFromString("--no-opt");
await createRequire(import.meta.url)("./load-bundle.cjs").runBundle("virtnbdrestore");
