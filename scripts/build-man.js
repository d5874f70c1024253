#!/usr/bin/env node
// Writes the man pages dist/man/man1/{virtnbdbackup,virtnbdrestore,virtnbdmap,virtnbdprune}.1 from the
// option declarations (src/cli/man-page.ts; run after `tsc`, it imports dist/). The date in the
// footer is SOURCE_DATE_EPOCH's (reproducible builds), else today's.
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const { manPage, MAN_PAGES } = await import(new URL("../dist/cli/man-page.js", import.meta.url).href);

const epoch = process.env.SOURCE_DATE_EPOCH;
const date = (epoch ? new Date(Number(epoch) * 1000) : new Date()).toISOString().slice(0, 10);

const out = join(root, "dist/man");
rmSync(out, { recursive: true, force: true });
for (const { name, file } of MAN_PAGES) {
  const path = join(out, file);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, manPage(name, { date }));
}
console.log(`build-man: ${MAN_PAGES.length} pages in dist/man/`);
