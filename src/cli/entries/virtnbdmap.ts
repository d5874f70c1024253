// Entry point of `virtnbdmap`, bundled into dist/bin/virtnbdmap.mjs (scripts/bundle.js) for a fast start.
import { runCommand } from "../command.js";
import { main } from "../map.js";

process.exitCode = await runCommand(main);
