// Entry point of `virtnbdbackup`, bundled into dist/bin/virtnbdbackup.mjs (scripts/bundle.js) for a fast start.
import { runCommand } from "../command.js";
import { keepYoungGenerationSize } from "../young-generation.js";
import { main } from "../backup.js";

// Every module of the bundle is evaluated by now (imports first): the young generation stops growing from here.
keepYoungGenerationSize();
process.exitCode = await runCommand(main);
