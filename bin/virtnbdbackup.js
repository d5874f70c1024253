#!/usr/bin/env node
// virtnbdbackup: back up a libvirt domain (see `--help`).
// The bundled command (npm run build); see scripts/bundle.js.
import { setFlagsFromString } from "node:v8";

// V8's young generation kept at its first size (1 MiB per semi-space), set before the bundle
// loads. V8 doubles it (up to 16 MiB per semi-space) whenever much survives a scavenge, which a
// copy with reads and writes in flight always has, and never shrinks it again: the data
// commands peaked 5-10 MiB higher for it. The growth factor is read whenever the space would
// grow, so this takes effect without node command-line flags; start-up costs 10-25 ms more CPU
// (README, "Where the memory goes").
setFlagsFromString("--semi-space-growth-factor=1");
await import("../dist/bin/virtnbdbackup.mjs");
