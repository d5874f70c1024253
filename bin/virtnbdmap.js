#!/usr/bin/env node
// virtnbdmap: serve a backup chain through nbdkit / map it to /dev/nbdX (see `--help`).
import { runCommand } from "../dist/cli/run.js";
import { main } from "../dist/cli/map.js";

process.exitCode = await runCommand(main);
