/**
 * Building the npm package and the .deb in a copy of the working tree, for the install tests.
 *
 *   const src = await sourceCopy(join(work, "src"));   // tracked + untracked-not-ignored files
 *   const tgz = await npmPack(src, work);               // `npm pack` (its prepack builds everything)
 *   await npm(["install", "-g", "--prefix", p, tgz], work);
 *
 * The copy has its own dist/ and src/native/build/ (the real prepack build, as from a fresh
 * checkout) and borrows node_modules through a symlink, so packing never rebuilds the
 * checkout's own addon. npm runs with the npm_* variables of an outer `npm test` removed (the
 * project's .npmrc must not leak into a global install).
 */
import { cp, mkdir, readdir, realpath, symlink } from "node:fs/promises";
import { lstatSync } from "node:fs";
import { dirname, join } from "node:path";
import { execa } from "execa";
import { ROOT } from "./our-tool.js";

/** The environment without npm's lifecycle variables (npm_config_*, npm_package_*, INIT_CWD). */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(npm_|INIT_CWD$)/i.test(k)) env[k] = v;
  return { ...env, ...extra };
}

/** Runs npm, throwing with its whole output when it fails; resolves with stdout. */
export async function npm(args: string[], cwd: string, env: Record<string, string> = {}): Promise<string> {
  const r = await execa("npm", args, { cwd, env: cleanEnv(env), extendEnv: false, reject: false, all: true, timeout: 600_000 });
  if (r.exitCode !== 0) throw new Error(`npm ${args.join(" ")} (in ${cwd}) failed (${r.exitCode}):\n${r.all}`);
  return r.stdout;
}

/** Copies the working tree's files (as `git ls-files -co --exclude-standard`) into `dest`. */
export async function sourceCopy(dest: string): Promise<string> {
  const r = await execa("git", ["ls-files", "-z", "-co", "--exclude-standard"], { cwd: ROOT });
  await mkdir(dest, { recursive: true });
  for (const file of r.stdout.split("\0")) {
    if (!file || file === "node_modules" || file.startsWith("src/native/build")) continue;
    let st;
    try {
      st = lstatSync(join(ROOT, file));
    } catch {
      continue; // deleted in the working tree
    }
    if (!st.isFile()) continue;
    await mkdir(dirname(join(dest, file)), { recursive: true });
    await cp(join(ROOT, file), join(dest, file), { preserveTimestamps: true });
  }
  await symlink(await realpath(join(ROOT, "node_modules")), join(dest, "node_modules"));
  return dest;
}

/** `npm pack` in `src` (prepack: the whole build) into `outDir`; resolves with the tarball's path. */
export async function npmPack(src: string, outDir: string): Promise<string> {
  await npm(["pack", "--pack-destination", outDir], src);
  const tgz = (await readdir(outDir)).filter((f) => /^virtnbdbackup-ts-.*\.tgz$/.test(f));
  if (tgz.length !== 1) throw new Error(`npm pack left ${tgz.length} tarballs in ${outDir}`);
  return join(outDir, tgz[0]!);
}

/** The man pages and completion files `npm run build` makes, relative to the package root. */
export const COMMANDS = ["virtnbdbackup", "virtnbdrestore", "virtnbdmap"] as const;
export const MAN_PAGES = COMMANDS.map((c) => `dist/man/man1/${c}.1`);
export const COMPLETIONS = COMMANDS.flatMap((c) => [`dist/completion/bash/${c}`, `dist/completion/zsh/_${c}`]);
