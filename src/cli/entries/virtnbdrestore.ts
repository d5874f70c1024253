// Entry point of `virtnbdrestore`, bundled into dist/bin/virtnbdrestore.mjs (scripts/bundle.js) for a fast start.
import { runCommand } from "../command.js";
import { main } from "../restore.js";

process.exitCode = await runCommand(main);
