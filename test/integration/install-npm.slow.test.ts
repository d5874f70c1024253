/**
 * The npm package installs like real software: `npm pack` (in a copy of the working tree; its
 * prepack builds the addon, dist/ and the man pages and stages the prebuilt addon), then
 * `npm install -g --prefix <tmp> ./<tarball>` gives three working commands. Checked: the
 * tarball's contents (bundles, prebuilt addon, addon sources, man pages and completions when the
 * build made them; no tests, benchmarks, fixtures or tsc output), the install using the prebuilt
 * addon (nothing compiled), `--help` / `--version`, a full backup of a throwaway running domain
 * with the installed virtnbdbackup restored bit-exact by the installed virtnbdrestore; then an
 * install of the tarball with an unloadable prebuilt addon (node-gyp at install time, Node's
 * headers found locally)
 * whose commands run on the addon built there. (The same build runs with
 * `npm install -g --build-from-source`.)
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, realpath, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { testDomain } from "../helpers/domains.js";
import { FULL_VERSION } from "../../src/report/version.js";
import { captureTruth, imageHash, sh } from "../helpers/our-tool.js";
import { COMMANDS, COMPLETIONS, MAN_PAGES, cleanEnv, npm, npmPack, sourceCopy } from "../helpers/package-build.js";

const PKG = "lib/node_modules/virtnbdbackup-ts";
const PREBUILT = `src/native/prebuilds/${process.platform}-${process.arch}/virtnbd.node`;
const BUILT = "src/native/build/Release/virtnbd.node";

let packed: Promise<{ work: string; src: string; tarball: string }> | undefined;
let workDir: string | undefined;
after(() => (workDir ? rm(workDir, { recursive: true, force: true }) : undefined));
/** One `npm pack` for the whole file (made by the first test, removed after the last). */
function pack(): Promise<{ work: string; src: string; tarball: string }> {
  packed ??= (async () => {
    const work = (workDir = await mkdtemp(join(process.env["VNBT_TMPDIR"] ?? tmpdir(), "vnbt-npm-")));
    const src = await sourceCopy(join(work, "src"));
    return { work, src, tarball: await npmPack(src, work) };
  })();
  return packed;
}

/** Runs an installed command; resolves with its result (never rejects on a non-zero exit). */
function run(bin: string, args: string[]) {
  return execa(bin, args, { env: cleanEnv(), extendEnv: false, reject: false, all: true, timeout: 240_000 });
}

async function assertCommandsRun(prefix: string): Promise<void> {
  for (const c of COMMANDS) {
    const help = await run(join(prefix, "bin", c), ["--help"]);
    assert.equal(help.exitCode, 0, `${c} --help:\n${help.all}`);
    assert.match(help.stdout, new RegExp(`^usage: ${c} `));
    const version = await run(join(prefix, "bin", c), ["--version"]);
    assert.equal(version.exitCode, 0, `${c} --version:\n${version.all}`);
    assert.equal(version.stdout.trim(), FULL_VERSION);
  }
}

test("npm pack: the tarball has the bundles, the prebuilt addon and its sources, nothing of the dev tree", async () => {
  const { tarball } = await pack();
  const files = (await sh("tar", ["-tzf", tarball])).split("\n").filter(Boolean).map((f) => f.replace(/^package\//, ""));
  for (const f of [
    "package.json",
    "README.md",
    "bin/load-bundle.cjs",
    "dist/bin/s3-sdk.cjs",
    ...COMMANDS.flatMap((c) => [`bin/${c}.js`, `dist/bin/${c}.cjs`, `dist/bin/${c}.cache`]),
    PREBUILT,
    "src/native/binding.gyp",
    "src/native/addon.cc",
    "src/native/libvirt/common.h",
    "scripts/install-native.js",
    "systemd/virtnbdbackup@.service",
    "systemd/virtnbdbackup@.timer",
    "systemd/virtnbdbackup.conf.example",
  ]) {
    assert.ok(files.includes(f), `${f} in the tarball`);
  }
  const unwanted = files.filter((f) => /^(test|bench|fixtures|docs|\.ci|node_modules)\/|^dist\/(?!bin\/|man\/|completion\/)|^src\/(?!native\/)|\.ts$|\.map$/.test(f));
  assert.deepEqual(unwanted, [], "no tests, benchmarks, fixtures, TypeScript or tsc output");
  assert.ok(!files.some((f) => f.startsWith("src/native/build/")), "no build tree");
  for (const f of [...MAN_PAGES, ...COMPLETIONS]) assert.ok(files.includes(f), `${f} in the tarball`);
});

test("npm install -g of the tarball: the prebuilt addon, three commands, a full backup restored bit-exact", async (t) => {
  const { work, tarball } = await pack();
  const prefix = join(work, "prefix");
  t.after(() => rm(prefix, { recursive: true, force: true }));
  await npm(["install", "-g", "--prefix", prefix, "--prefer-offline", "--no-audit", "--no-fund", tarball], work);
  const pkg = join(prefix, PKG);
  assert.ok(existsSync(join(pkg, PREBUILT)), "prebuilt addon installed");
  assert.ok(!existsSync(join(pkg, BUILT)), "nothing compiled at install: the prebuilt loads here");
  await assertCommandsRun(prefix);
  // The code caches packed with the bundles fit this node: V8 takes them (no compile at start).
  for (const c of COMMANDS) {
    const check = `const l = require(${JSON.stringify(join(pkg, "bin/load-bundle.cjs"))}); console.log(l.loadBundle(${JSON.stringify(join(pkg, `dist/bin/${c}.cjs`))}, ${JSON.stringify(join(pkg, `dist/bin/${c}.cache`))}).cacheTaken)`;
    const flags = c === "virtnbdrestore" ? ["--no-opt"] : []; // as its bin sets before loading
    assert.equal((await sh(process.execPath, [...flags, "-e", check])).trim(), "true", `${c}: its code cache is taken`);
  }
  // npm links the package's man pages into <prefix>/share/man: `man` finds them there.
  for (const c of COMMANDS) {
    const found = await sh("man", ["-M", join(prefix, "share/man"), "-w", c]);
    assert.equal(await realpath(found.trim()), await realpath(join(prefix, `share/man/man1/${c}.1`)), `man -w ${c}`);
    assert.equal(await realpath(found.trim()), join(pkg, `dist/man/man1/${c}.1`), `man -w ${c}: the package's page`);
  }

  const d = await testDomain(t, { start: true });
  const set = join(work, "set");
  const backup = await run(join(prefix, "bin/virtnbdbackup"), ["--nocolor", "-d", d.name, "-l", "full", "-o", set]);
  assert.equal(backup.exitCode, 0, `installed virtnbdbackup:\n${backup.all}`);
  const truth = await captureTruth(d);
  const out = join(work, "restored");
  const restore = await run(join(prefix, "bin/virtnbdrestore"), ["--nocolor", "-i", set, "-o", out]);
  assert.equal(restore.exitCode, 0, `installed virtnbdrestore:\n${restore.all}`);
  assert.equal(await imageHash(join(out, "sda.qcow2"), "qcow2"), truth["sda"], "restored image bit-exact");
});

test("npm install -g with a prebuilt addon that does not load: node-gyp builds it with local headers, the commands use it", async (t) => {
  const { work, tarball } = await pack();
  // The same tarball with its prebuilt addon unloadable (as on another arch or without a library).
  const unpacked = join(work, "unloadable");
  t.after(() => rm(unpacked, { recursive: true, force: true }));
  await mkdir(unpacked);
  await sh("tar", ["-xzf", tarball, "-C", unpacked]);
  await writeFile(join(unpacked, "package", PREBUILT), "not an ELF file\n");
  const broken = join(unpacked, "virtnbdbackup-ts-unloadable.tgz");
  await sh("tar", ["-czf", broken, "-C", unpacked, "package"]);
  const prefix = join(work, "prefix-src");
  t.after(() => rm(prefix, { recursive: true, force: true }));
  await npm(["install", "-g", "--prefix", prefix, "--prefer-offline", "--no-audit", "--no-fund", broken], work);
  const pkg = join(prefix, PKG);
  assert.ok(existsSync(join(pkg, BUILT)), "addon built at install time");
  await assertCommandsRun(prefix);
  // A data path through the addon (lz4 frames, Adler-32): verify a checked-in set.
  const verify = await run(join(prefix, "bin/virtnbdrestore"), ["--nocolor", "-a", "verify", "-i", join(work, "src/fixtures/upstream-2.47/lz4"), "-o", join(work, "v")]);
  assert.equal(verify.exitCode, 0, verify.all);
  assert.match(verify.all, /complete/);
});
