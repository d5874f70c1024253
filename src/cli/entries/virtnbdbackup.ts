// Entry point of `virtnbdbackup`, bundled into dist/bin/virtnbdbackup.mjs (scripts/bundle.js) for a fast start.
import { runCommand } from "../command.js";
import { main } from "../backup.js";

process.exitCode = await runCommand(main);
