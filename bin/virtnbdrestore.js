#!/usr/bin/env node
// virtnbdrestore: restore, dump or verify backup sets (see `--help`).
// The bundled command (npm run build); see scripts/bundle.js.
import { setFlagsFromString } from "node:v8";

// V8's young generation kept at its first size (1 MiB per semi-space), set before the bundle
// loads. V8 doubles it (up to 16 MiB per semi-space) whenever much survives a scavenge, which a
// copy with reads and writes in flight always has, and never shrinks it again: the data
// commands peaked 5-10 MiB higher for it. The growth factor is read whenever the space would
// grow, so this takes effect without node command-line flags; start-up costs 10-25 ms more CPU.
// And no optimizing compiler (TurboFan): the first function it optimizes brings in ~4 MiB of
// its own code and ~6 MiB of compiler memory for good, while a restore's own work is native
// (qemu-img, lz4, reads); it peaked 9-12 MiB lower, lz4 restores as fast, chains served by our
// NBD server ~10 % more CPU (README, "Where the memory goes").
setFlagsFromString("--semi-space-growth-factor=1");
setFlagsFromString("--no-opt");
await import("../dist/bin/virtnbdrestore.mjs");
