#!/usr/bin/env node
// virtnbdbackup: back up a libvirt domain (see `--help`).
import { runCommand } from "../dist/cli/run.js";
import { main } from "../dist/cli/backup.js";

process.exitCode = await runCommand(main);
