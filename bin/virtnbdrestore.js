#!/usr/bin/env node
// virtnbdrestore: restore, dump or verify backup sets (see `--help`).
import { runCommand } from "../dist/cli/run.js";
import { main } from "../dist/cli/restore.js";

process.exitCode = await runCommand(main);
