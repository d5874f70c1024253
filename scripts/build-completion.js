#!/usr/bin/env node
// Writes the shell completions from the option declarations (src/cli/completion.ts; run after
// `tsc`, it imports dist/): dist/completion/bash/<command> (for
// /usr/share/bash-completion/completions/) and dist/completion/zsh/_<command> (for a $fpath
// directory such as /usr/share/zsh/vendor-completions/).
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const { bashCompletion, zshCompletion, COMPLETION_FILES } = await import(
  new URL("../dist/cli/completion.js", import.meta.url).href
);

const out = join(root, "dist/completion");
rmSync(out, { recursive: true, force: true });
for (const { name, shell, file } of COMPLETION_FILES) {
  const path = join(out, file);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, shell === "bash" ? bashCompletion(name) : zshCompletion(name));
}
console.log(`build-completion: ${COMPLETION_FILES.length} files in dist/completion/`);
