// Entry point of `virtnbdmap`, bundled into dist/bin/virtnbdmap.cjs (scripts/bundle.js); bin/load-bundle.cjs
// evaluates the bundle (through a V8 code cache), then calls start().
import { runCommand } from "../command.js";
import { main } from "../map.js";

export async function start(): Promise<void> {
  process.exitCode = await runCommand(main);
}
