// Entry point of `virtnbdrestore`, bundled into dist/bin/virtnbdrestore.mjs (scripts/bundle.js) for a fast start.
import { runCommand } from "../command.js";
import { keepYoungGenerationSize } from "../young-generation.js";
import { main } from "../restore.js";

// Every module of the bundle is evaluated by now (imports first): the young generation stops growing from here.
keepYoungGenerationSize();
process.exitCode = await runCommand(main);
