// Entry point of `virtnbdprune`, bundled into dist/bin/virtnbdprune.cjs (scripts/bundle.js); bin/load-bundle.cjs
// evaluates the bundle (through a V8 code cache), then calls start().
import { runCommand } from "../command.js";
import { main } from "../prune.js";

export async function start(): Promise<void> {
  process.exitCode = await runCommand(main);
}
