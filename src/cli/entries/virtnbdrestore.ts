// Entry point of `virtnbdrestore`, bundled into dist/bin/virtnbdrestore.cjs (scripts/bundle.js); bin/load-bundle.cjs
// evaluates the bundle (through a V8 code cache), then calls start().
import { runCommand } from "../command.js";
import { keepYoungGenerationSize } from "../young-generation.js";
import { main } from "../restore.js";

export async function start(): Promise<void> {
  // Every module of the bundle is evaluated by now: the young generation stops growing from here.
  keepYoungGenerationSize();
  process.exitCode = await runCommand(main);
}
