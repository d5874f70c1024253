/**
 * The Debian package (`npm run package:deb`, built once in a copy of the working tree): its
 * control fields, ownership and contents (prebuilt addon, production node_modules only, no
 * sources, no node-gyp), then a real install into a throwaway dpkg root (`dpkg --root`, its
 * own database: this host keeps Debian's virtnbdbackup, which the other tests need) over a
 * stand-in package named virtnbdbackup with the same paths, which ours replaces (Conflicts +
 * Replaces): the commands' `--help` / `--version`, a checked-in backup set restored bit-exact
 * by the installed virtnbdrestore, `man -w`, the completions and the systemd units, then
 * `dpkg -P` leaves nothing but dpkg's own database behind.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { execa } from "execa";
import { FULL_VERSION } from "../../src/report/version.js";
import { imageHash, ROOT, sh } from "../helpers/our-tool.js";
import { COMMANDS, cleanEnv, npm, sourceCopy } from "../helpers/package-build.js";
import { tempDir } from "../helpers/tmp.js";

const NAME = "virtnbdbackup-ts";
const APP = `usr/lib/${NAME}`;
/** The systemd units (lib/systemd/system) and the example environment file (doc examples). */
const SYSTEMD_FILES = [
  { source: "systemd/virtnbdbackup@.service", installed: "lib/systemd/system/virtnbdbackup@.service" },
  { source: "systemd/virtnbdbackup@.timer", installed: "lib/systemd/system/virtnbdbackup@.timer" },
  { source: "systemd/virtnbdbackup.conf.example", installed: `usr/share/doc/${NAME}/examples/virtnbdbackup.conf.example` },
];

/** Every file and symlink below `dir`, relative to it. */
async function filesBelow(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isDirectory()) out.push(relative(dir, join(e.parentPath, e.name)));
  }
  return out.sort();
}

/** A minimal package named virtnbdbackup owning /usr/bin/virtnbdbackup and its man page. */
async function stubDebianTool(work: string): Promise<string> {
  const stage = join(work, "stub");
  await mkdir(join(stage, "DEBIAN"), { recursive: true });
  await mkdir(join(stage, "usr/bin"), { recursive: true });
  await mkdir(join(stage, "usr/share/man/man1"), { recursive: true });
  await writeFile(join(stage, "usr/bin/virtnbdbackup"), "#!/bin/sh\necho stand-in\n", { mode: 0o755 });
  await writeFile(join(stage, "usr/share/man/man1/virtnbdbackup.1.gz"), "");
  await writeFile(
    join(stage, "DEBIAN/control"),
    "Package: virtnbdbackup\nVersion: 1.9.15-1\nArchitecture: all\nMaintainer: test <test@localhost>\nDescription: stand-in for Debian's virtnbdbackup\n",
  );
  const deb = join(work, "virtnbdbackup-stub.deb");
  await sh("dpkg-deb", ["--build", "--root-owner-group", stage, deb]);
  return deb;
}

function run(cmd: string, args: string[]) {
  return execa(cmd, args, { env: cleanEnv(), extendEnv: false, reject: false, all: true, timeout: 240_000 });
}

test("package:deb: a .deb that installs, runs and purges without leftovers", async (t) => {
  const work = await tempDir(t, "vnbt-deb-");
  const src = await sourceCopy(join(work, "src"));
  const out = (await npm(["run", "--silent", "package:deb", "--", "-o", work], src)).trim().split("\n").at(-1)!;
  const version = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
  const arch = (await sh("dpkg", ["--print-architecture"])).trim();
  assert.equal(out, join(work, `${NAME}_${version}_${arch}.deb`));
  const deb = out;

  // Control fields.
  const field = async (f: string) => (await sh("dpkg-deb", ["-f", deb, f])).trim();
  assert.equal(await field("Package"), NAME);
  assert.equal(await field("Version"), version);
  assert.equal(await field("Architecture"), arch);
  const depends = await field("Depends");
  for (const p of ["nodejs (>= 20.17)", "libvirt0", "liblz4-1", "libdeflate0", "zlib1g", "qemu-utils"]) {
    assert.ok(depends.split(/,\s*/).includes(p), `Depends has ${p}: ${depends}`);
  }
  assert.equal(await field("Conflicts"), "virtnbdbackup");

  // Contents: root-owned; the prebuilt addon, production node_modules, no sources, no node-gyp.
  const listing = (await sh("dpkg-deb", ["-c", deb])).trim().split("\n");
  assert.deepEqual(listing.filter((l) => !/^\S+ root\/root /.test(l)), [], "every entry root/root");
  const paths = listing.map((l) => l.replace(/^.* \.\//, "").replace(/ -> .*$/, ""));
  for (const p of [
    `${APP}/bin/load-bundle.cjs`,
    `${APP}/dist/bin/s3-sdk.cjs`,
    ...COMMANDS.flatMap((c) => [`usr/bin/${c}`, `${APP}/bin/${c}.js`, `${APP}/dist/bin/${c}.cjs`, `${APP}/dist/bin/${c}.cache`]),
    `${APP}/package.json`,
    `${APP}/src/native/prebuilds/linux-${process.arch}/virtnbd.node`,
    `${APP}/node_modules/yazl/package.json`,
    `usr/share/doc/${NAME}/copyright`,
    `usr/share/doc/${NAME}/README.md`,
    ...SYSTEMD_FILES.map((f) => f.installed),
  ]) {
    assert.ok(paths.includes(p), `${p} in the package`);
  }
  const own = new RegExp(`^${APP}/(?!node_modules/)`);
  const unwanted = paths.filter(
    (p) => (own.test(p) && /\.(cc|h|gyp|ts)$|\/(test|bench|fixtures|scripts)\//.test(p)) || /\/node_modules\/(node-gyp|node-addon-api|typescript|esbuild|tsx)\//.test(p),
  );
  assert.deepEqual(unwanted, [], "no addon sources, build tools or tests");
  assert.deepEqual(paths.filter((p) => p.startsWith(`${APP}/systemd/`)), [], "the units only in their system places");

  // A throwaway dpkg root with an empty database.
  const root = join(work, "root");
  const admin = join(root, "var/lib/dpkg");
  for (const d of ["info", "updates", "triggers"]) await mkdir(join(admin, d), { recursive: true });
  await writeFile(join(admin, "status"), "");
  await writeFile(join(admin, "available"), "");
  const dpkg = (args: string[]) => sh("dpkg", [`--root=${root}`, "--log=/dev/null", ...args]);
  const status = async (pkg: string) => (await run("dpkg", [`--root=${root}`, "-s", pkg])).all;
  // A stand-in for Debian's virtnbdbackup (same command and man page names) installed first:
  // ours replaces it (Conflicts + Replaces), as apt does on a real host.
  await dpkg(["-i", await stubDebianTool(work)]);
  assert.match(await status("virtnbdbackup"), /^Status: install ok installed$/m);
  const installed = await dpkg(["--force-depends", "-i", deb]);
  assert.match(installed, /Removing virtnbdbackup \(1.9.15-1\), to allow configuration of virtnbdbackup-ts/);
  assert.doesNotMatch(await status("virtnbdbackup"), /^Status: install ok installed$/m, "the stand-in is removed");
  try {
    assert.match(await dpkg(["-s", NAME]), /^Status: install ok installed$/m);
    for (const c of COMMANDS) {
      const help = await run(join(root, "usr/bin", c), ["--help"]);
      assert.equal(help.exitCode, 0, `${c} --help:\n${help.all}`);
      assert.match(help.stdout, new RegExp(`^usage: ${c} `));
      const v = await run(join(root, "usr/bin", c), ["--version"]);
      assert.equal(v.exitCode, 0, v.all);
      assert.equal(v.stdout.trim(), FULL_VERSION);
    }
    // The data path through the prebuilt addon: a checked-in set (Python 2.47, lz4) restored.
    const set = JSON.parse(readFileSync(join(ROOT, "fixtures/expected.json"), "utf8")) as {
      sets: { path: string; disk: string; checkpoints: { sha256: string }[] }[];
    };
    const fixture = set.sets.find((s) => s.path === "upstream-2.47/lz4")!;
    const restored = join(work, "restored");
    const r = await run(join(root, "usr/bin/virtnbdrestore"), ["--nocolor", "-i", join(ROOT, "fixtures", fixture.path), "-o", restored]);
    assert.equal(r.exitCode, 0, r.all);
    assert.equal(await imageHash(join(restored, `${fixture.disk}.qcow2`), "qcow2"), fixture.checkpoints.at(-1)!.sha256);

    // The systemd units as in the checkout; the commands they run are installed.
    for (const f of SYSTEMD_FILES) {
      assert.equal(readFileSync(join(root, f.installed), "utf8"), readFileSync(join(ROOT, f.source), "utf8"), f.installed);
    }
    const service = readFileSync(join(root, "lib/systemd/system/virtnbdbackup@.service"), "utf8");
    assert.match(service, /^ExecStart=\/usr\/bin\/virtnbdbackup /m);
    assert.ok(existsSync(join(root, "usr/bin/virtnbdbackup")));
    // virtnbdprune (run by the service) is another command of this package once it exists in the checkout.
    if (existsSync(join(ROOT, "bin/virtnbdprune.js"))) assert.ok(existsSync(join(root, "usr/bin/virtnbdprune")), "the prune command the service runs");
    for (const c of COMMANDS) {
      assert.equal((await sh("man", ["-M", join(root, "usr/share/man"), "-w", c])).trim(), join(root, `usr/share/man/man1/${c}.1.gz`));
      assert.ok(existsSync(join(root, "usr/share/bash-completion/completions", c)), `bash completion of ${c}`);
      assert.ok(existsSync(join(root, "usr/share/zsh/vendor-completions", `_${c}`)), `zsh completion of ${c}`);
    }
  } finally {
    await dpkg(["-P", NAME]);
  }
  const left = (await filesBelow(root)).filter((f) => !f.startsWith("var/lib/dpkg/"));
  assert.deepEqual(left, [], "purge leaves nothing behind");
  const dirs = (await readdir(root, { recursive: true, withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => relative(root, join(e.parentPath, e.name)));
  assert.deepEqual(dirs.filter((d) => !/^var(\/lib(\/dpkg(\/|$)|$)|$)/.test(d)), [], "no directories left");
  assert.ok(!existsSync(join(root, APP)) && !existsSync(join(root, "usr/bin/virtnbdbackup")));
  assert.match(await status(NAME), /not installed|no information/);
});
