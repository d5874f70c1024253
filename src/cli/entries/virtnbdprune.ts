// Entry point of `virtnbdprune`, bundled into dist/bin/virtnbdprune.mjs (scripts/bundle.js) for a fast start.
import { runCommand } from "../command.js";
import { main } from "../prune.js";

process.exitCode = await runCommand(main);
