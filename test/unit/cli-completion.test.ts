// Shell completion generated from the parser declarations (src/cli/completion.ts): the bash
// files parse, and completing in a bash subprocess offers options, choices, domains from virsh
// (a fake one on PATH here) and paths.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parserSpec, type CommandName } from "../../src/cli/args.js";
import { actionsOf } from "../../src/cli/argparse.js";
import { bashCompletion, COMMANDS, valueKind, zshCompletion } from "../../src/cli/completion.js";
import { MAN_CONTEXT } from "../../src/cli/man-page.js";
import { tempDir } from "../helpers/tmp.js";

const BASH = "/bin/bash";

/** Write the completion file of `name` into `dir`; its path. */
function completionFile(dir: string, name: CommandName): string {
  const file = join(dir, name);
  if (!existsSync(file)) writeFileSync(file, bashCompletion(name));
  return file;
}

/**
 * Complete the command line `line` (the cursor at its end; a trailing space starts a new
 * word) as bash would call the function: COMP_WORDS split at blanks and at "=" like readline.
 */
function complete(dir: string, name: CommandName, line: string, opts: { path?: string; cwd?: string } = {}): { words: string[]; stderr: string } {
  const words = line.split(/\s+/).flatMap((w) => w.split(/(=)/).filter((p) => p !== ""));
  if (line.endsWith(" ")) words.push("");
  else if (words.length === 0) words.push("");
  const script = `
source "$1" || exit 9
COMP_LINE="$2"
COMP_POINT=\${#COMP_LINE}
eval "COMP_WORDS=($3)"
COMP_CWORD=$(( \${#COMP_WORDS[@]} - 1 ))
COMPREPLY=()
_virtnbdbackup_ts_${name}
printf '%s\\n' "\${COMPREPLY[@]}"
`;
  const quoted = words.map((w) => `'${w.replace(/'/g, `'\\''`)}'`).join(" ");
  const r = spawnSync(BASH, ["--norc", "-c", script, "bash", completionFile(dir, name), line, quoted], {
    encoding: "utf8",
    cwd: opts.cwd ?? dir,
    env: { ...process.env, PATH: opts.path ?? process.env.PATH ?? "/usr/bin:/bin" },
  });
  assert.equal(r.status, 0, r.stderr);
  return { words: r.stdout.split("\n").filter((w) => w !== ""), stderr: r.stderr };
}

for (const name of COMMANDS) {
  test(`${name}: the bash completion file parses (bash -n) and can be sourced twice`, async (t) => {
    const dir = await tempDir(t);
    const file = completionFile(dir, name);
    const n = spawnSync(BASH, ["-n", file], { encoding: "utf8" });
    assert.equal(n.status, 0, n.stderr);
    const s = spawnSync(BASH, ["--norc", "-c", `set -u; source "$1"; source "$1"; complete -p ${name}`, "bash", file], { encoding: "utf8" });
    assert.equal(s.status, 0, s.stderr);
    assert.equal(s.stdout.trim(), `complete -F _virtnbdbackup_ts_${name} ${name}`);
  });

  test(`${name}: "-" offers every option string of the parser`, async (t) => {
    const dir = await tempDir(t);
    const all = actionsOf(parserSpec(name, MAN_CONTEXT)).flatMap((a) => a.optionStrings);
    assert.deepEqual(complete(dir, name, `${name} -`).words.sort(), [...all].sort());
  });

  test(`${name}: zsh completion names every option`, () => {
    const z = zshCompletion(name);
    assert.ok(z.startsWith(`#compdef ${name}\n`));
    for (const a of actionsOf(parserSpec(name, MAN_CONTEXT))) for (const o of a.optionStrings) assert.ok(z.includes(o), o);
    const zsh = ["/usr/bin/zsh", "/bin/zsh"].find((p) => existsSync(p));
    if (zsh) {
      const r = spawnSync(zsh, ["-n"], { input: z, encoding: "utf8" });
      assert.equal(r.status, 0, r.stderr);
    }
  });
}

test("choices: backup -l and -t, restore -a, also as --level=, abbreviated and half typed", async (t) => {
  const dir = await tempDir(t);
  const levels = ["copy", "full", "inc", "diff", "auto"];
  assert.deepEqual(complete(dir, "virtnbdbackup", "virtnbdbackup -l ").words, levels);
  assert.deepEqual(complete(dir, "virtnbdbackup", "virtnbdbackup -d vm --level ").words, levels);
  assert.deepEqual(complete(dir, "virtnbdbackup", "virtnbdbackup --lev ").words, levels);
  assert.deepEqual(complete(dir, "virtnbdbackup", "virtnbdbackup --level=").words, levels);
  assert.deepEqual(complete(dir, "virtnbdbackup", "virtnbdbackup --level=i").words, ["inc"]);
  assert.deepEqual(complete(dir, "virtnbdbackup", "virtnbdbackup -l d").words, ["diff"]);
  assert.deepEqual(complete(dir, "virtnbdbackup", "virtnbdbackup -t ").words, ["stream", "raw"]);
  assert.deepEqual(complete(dir, "virtnbdrestore", "virtnbdrestore -a ").words, ["dump", "restore", "verify"]);
  // a value that is a number or a name: nothing, not the options
  assert.deepEqual(complete(dir, "virtnbdbackup", "virtnbdbackup -P ").words, []);
});

test("option names: --no-sp completes to --no-sparse-detection", async (t) => {
  const dir = await tempDir(t);
  assert.deepEqual(complete(dir, "virtnbdbackup", "virtnbdbackup --no-sp").words, ["--no-sparse-detection"]);
  assert.deepEqual(complete(dir, "virtnbdbackup", "virtnbdbackup -d vm --ssh-p").words, ["--ssh-port", "--ssh-private-key"]);
  assert.deepEqual(complete(dir, "virtnbdmap", "virtnbdmap --listen-").words, ["--listen-address", "--listen-port", "--listen-only"]);
});

test("-d/--domain completes the names virsh lists (with -U), nothing when virsh fails", async (t) => {
  const dir = await tempDir(t);
  const bin = join(dir, "bin");
  mkdirSync(bin);
  const virsh = join(bin, "virsh");
  writeFileSync(virsh, `#!/bin/sh\necho "$*" > "${dir}/virsh-args"\nprintf 'web-vm\\ndb-vm\\n\\n'\n`);
  chmodSync(virsh, 0o755);
  const path = `${bin}:${process.env.PATH}`;
  assert.deepEqual(complete(dir, "virtnbdbackup", "virtnbdbackup -d ", { path }).words, ["web-vm", "db-vm"]);
  assert.deepEqual(complete(dir, "virtnbdbackup", "virtnbdbackup -l inc --domain d", { path }).words, ["db-vm"]);
  assert.deepEqual(complete(dir, "virtnbdbackup", "virtnbdbackup -U qemu:///session -d ", { path }).words, ["web-vm", "db-vm"]);
  const { readFileSync } = await import("node:fs");
  assert.equal(readFileSync(join(dir, "virsh-args"), "utf8").trim(), "-c qemu:///session list --all --name");

  writeFileSync(virsh, "#!/bin/sh\necho 'error: failed to connect to the hypervisor' >&2\nexit 1\n");
  const failed = complete(dir, "virtnbdbackup", "virtnbdbackup -d ", { path });
  assert.deepEqual(failed, { words: [], stderr: "" });
});

test("path options: directories for -o, files for -i/-f/-L, comma lists for virtnbdmap -f", async (t) => {
  const dir = await tempDir(t);
  mkdirSync(join(dir, "backups"));
  writeFileSync(join(dir, "backup.zip"), "");
  writeFileSync(join(dir, "sda.full.data"), "");
  writeFileSync(join(dir, "sda.inc.virtnbdbackup.1.data"), "");
  assert.deepEqual(complete(dir, "virtnbdbackup", "virtnbdbackup -o back").words, ["backups"]);
  assert.deepEqual(complete(dir, "virtnbdrestore", "virtnbdrestore -i back").words.sort(), ["backup.zip", "backups"]);
  assert.deepEqual(complete(dir, "virtnbdrestore", "virtnbdrestore -o v").words, ["verify"]);
  assert.deepEqual(complete(dir, "virtnbdrestore", "virtnbdrestore -L sda.f").words, ["sda.full.data"]);
  assert.deepEqual(complete(dir, "virtnbdmap", "virtnbdmap -f sda.full.data,sda.i").words, ["sda.full.data,sda.inc.virtnbdbackup.1.data"]);
  // virtnbdprune's PATHs: files and folders after the options; options still complete on "-"
  assert.deepEqual(complete(dir, "virtnbdprune", "virtnbdprune --keep-last 2 back").words.sort(), ["backup.zip", "backups"]);
  assert.deepEqual(complete(dir, "virtnbdprune", "virtnbdprune --keep-m").words, ["--keep-monthly"]);
});

test("every value-taking option has a completion kind; path options are files or directories", () => {
  const kinds: Record<string, string> = {};
  for (const name of COMMANDS) {
    const spec = parserSpec(name, MAN_CONTEXT);
    for (const a of actionsOf(spec)) {
      const k = valueKind(name, spec, a);
      if (a.nargs === 1) assert.ok(k !== null, `${name} ${a.optionStrings.join("/")}`);
      if (k) kinds[`${name} ${a.optionStrings.at(-1)}`] = k.kind;
    }
  }
  assert.equal(kinds["virtnbdbackup --domain"], "domain");
  assert.equal(kinds["virtnbdbackup --output"], "dir");
  assert.equal(kinds["virtnbdbackup --socketfile"], "file");
  assert.equal(kinds["virtnbdbackup --ssh-private-key"], "file");
  assert.equal(kinds["virtnbdrestore --logfile"], "file");
  assert.equal(kinds["virtnbdmap --file"], "files");
  assert.equal(kinds["virtnbdmap --device"], "device");
  assert.equal(kinds["virtnbdbackup --level"], "words");
});
