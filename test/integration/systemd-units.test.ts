/**
 * The systemd units in systemd/ (README, "Fleet use"): `virtnbdbackup@.service` and
 * `virtnbdbackup@.timer` pass `systemd-analyze verify` (and a broken copy does not), and the
 * service's command lines, read from the unit file with a real per-domain environment file,
 * back up a real throwaway domain: a full, then an inc (`LEVEL=auto`), pruning with the keep
 * rules of PRUNE_OPTIONS and skipped without them, and exit 75 of a busy domain counted as
 * success.
 *
 * systemd is not PID 1 on the test machines (and libvirtd is not one of its units), so no
 * `systemctl start` / `systemd-run`: test/helpers/systemd-unit.ts reads the unit, its
 * Environment= and EnvironmentFile=, expands the ExecStart= lines as systemd does (specifiers,
 * `${VAR}`, `$VAR`, `$$`) and the test runs them in order, stopping at an exit code that
 * SuccessExitStatus= does not accept, as systemd does for a oneshot service.
 *
 * The units name /usr/bin/virtnbdbackup and /usr/bin/virtnbdprune; the test renders copies
 * pointing to this checkout's bin/virtnbdbackup.js. virtnbdprune is written elsewhere: for
 * `verify` the checkout's bin/virtnbdprune.js when it exists, else a stand-in executable in the
 * test's temp dir; the runs always use a stand-in in the temp dir that records its arguments
 * (what is checked here is the command line the unit builds; pruning has its own tests).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { chmod, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { lockFileName } from "../../src/connect/domain-lock.js";
import { testDomain } from "../helpers/domains.js";
import { ensureBuilt, ROOT } from "../helpers/our-tool.js";
import { execStartLines, readEnvironmentFile, readUnit, serviceEnvironment, successExitCodes, unescapeInstance, values, type Unit } from "../helpers/systemd-unit.js";
import { tempDir } from "../helpers/tmp.js";

const UNITS = join(ROOT, "systemd");
const PREFIX = "virtnbdbackup";
const SHIPPED_BACKUP = "/usr/bin/virtnbdbackup";
const SHIPPED_PRUNE = "/usr/bin/virtnbdprune";
const SHIPPED_CONF_DIR = "/etc/virtnbdbackup/";

interface Paths {
  backup: string;
  prune: string;
  confDir?: string;
}

/** The unit text with the commands (and the environment file folder) moved to `p`. */
function render(text: string, p: Paths): string {
  let out = text.replaceAll(`${SHIPPED_BACKUP} `, `${p.backup} `).replaceAll(`${SHIPPED_PRUNE} `, `${p.prune} `);
  if (p.confDir) out = out.replaceAll(SHIPPED_CONF_DIR, `${p.confDir}/`);
  return out;
}

async function renderUnits(dir: string, p: Paths, edit: (service: string) => string = (s) => s): Promise<void> {
  const service = edit(render(readFileSync(join(UNITS, `${PREFIX}@.service`), "utf8"), p));
  assert.ok(!service.includes("/usr/bin/virtnbd"), "every command of the unit rendered");
  await writeFile(join(dir, `${PREFIX}@.service`), service);
  await writeFile(join(dir, `${PREFIX}@.timer`), readFileSync(join(UNITS, `${PREFIX}@.timer`), "utf8"));
}

/** `systemd-escape`: the instance name systemd wants for a domain name. */
async function escape(name: string): Promise<string> {
  return (await execa("systemd-escape", [name])).stdout.trim();
}

/** `systemd-analyze verify` of instance `instance` of the templates in `dir`. */
function verify(dir: string, instance: string) {
  return execa("systemd-analyze", ["verify", join(dir, `${PREFIX}@${instance}.service`), join(dir, `${PREFIX}@${instance}.timer`)], { reject: false, all: true });
}

/** A stand-in for virtnbdprune in `dir` that appends its arguments (one per line, then `--`) to `record`. */
async function pruneStandIn(dir: string, record: string): Promise<string> {
  const path = join(dir, "virtnbdprune-stand-in");
  await writeFile(path, `#!/bin/sh\nfor a in "$@"; do printf '%s\\n' "$a"; done >>'${record}'\necho -- >>'${record}'\n`);
  await chmod(path, 0o755);
  return path;
}

test("systemd-analyze verify accepts the service and timer (rendered with this checkout's commands) and refuses broken copies", async (t) => {
  const dir = await tempDir(t, "vnbt-units-");
  const realPrune = join(ROOT, "bin/virtnbdprune.js");
  const prune = existsSync(realPrune) ? realPrune : await pruneStandIn(dir, join(dir, "unused"));
  const instance = await escape("web-01");
  await renderUnits(dir, { backup: join(ROOT, "bin/virtnbdbackup.js"), prune });
  const ok = await verify(dir, instance);
  assert.equal(ok.exitCode, 0, ok.all);

  // The prune command sits inside `sh -c`: verify checks /bin/sh only, so check it here.
  const unit = readUnit(await readFile(join(dir, `${PREFIX}@.service`), "utf8"));
  const shLine = values(unit, "Service", "ExecStart").find((l) => l.startsWith("/bin/sh "));
  assert.ok(shLine?.includes(`exec ${prune} `), `the prune line runs ${prune}: ${shLine}`);

  // A missing command, and two ExecStart= without Type=oneshot: both refused.
  const missing = await tempDir(t, "vnbt-units-missing-");
  await renderUnits(missing, { backup: join(missing, "no-such-virtnbdbackup"), prune });
  const m = await verify(missing, instance);
  assert.notEqual(m.exitCode, 0, "a unit naming a missing command fails verification");
  assert.match(m.all, /no-such-virtnbdbackup is not executable/);
  const simple = await tempDir(t, "vnbt-units-simple-");
  await renderUnits(simple, { backup: join(ROOT, "bin/virtnbdbackup.js"), prune }, (s) => s.replace(/^Type=oneshot$/m, "Type=simple"));
  const s = await verify(simple, instance);
  assert.notEqual(s.exitCode, 0, "two ExecStart= lines need Type=oneshot");
  assert.match(s.all, /more than one ExecStart/);
});

test("the units' settings: oneshot, 75 is success, daily persistent timer with a random delay; the example file has every variable", () => {
  const service = readUnit(readFileSync(join(UNITS, `${PREFIX}@.service`), "utf8"));
  assert.deepEqual(values(service, "Service", "Type"), ["oneshot"]);
  assert.ok(successExitCodes(service).has(75));
  assert.deepEqual(values(service, "Service", "EnvironmentFile"), ["/etc/virtnbdbackup/%I.conf"]);
  assert.deepEqual(values(service, "Service", "LogsDirectory"), ["virtnbdbackup"]);
  assert.deepEqual(values(service, "Service", "PrivateTmp"), [], "PrivateTmp would hide the job's NBD socket in /var/tmp");
  const timer = readUnit(readFileSync(join(UNITS, `${PREFIX}@.timer`), "utf8"));
  assert.deepEqual(values(timer, "Timer", "OnCalendar"), ["daily"]);
  assert.deepEqual(values(timer, "Timer", "Persistent"), ["true"]);
  assert.equal(values(timer, "Timer", "RandomizedDelaySec").length, 1);
  assert.deepEqual(values(timer, "Install", "WantedBy"), ["timers.target"]);
  const example = Object.fromEntries(readEnvironmentFile(readFileSync(join(UNITS, "virtnbdbackup.conf.example"), "utf8")));
  assert.deepEqual(Object.keys(example).sort(), ["BACKUP_OPTIONS", "LEVEL", "PRUNE_OPTIONS", "TARGET", "URI"]);
  assert.match(example["BACKUP_OPTIONS"]!, /--metrics-file \S+/);
  assert.equal(example["PRUNE_OPTIONS"], "--keep-daily 7 --keep-weekly 4 --keep-monthly 6");
});

test("instance names: unescaped as systemd-escape does; a domain name with blanks stays one -d argument and names its file", async () => {
  for (const name of ["web-01", "db/primary", "a b", "vm_1.x"]) {
    const instance = await escape(name);
    assert.equal(unescapeInstance(instance), name, instance);
    assert.equal((await execa("systemd-escape", ["--unescape", instance])).stdout, name);
  }
  const unit = readUnit(readFileSync(join(UNITS, `${PREFIX}@.service`), "utf8"));
  const instance = await escape("web 01-x");
  const read: string[] = [];
  const env = serviceEnvironment(unit, PREFIX, instance, (p) => (read.push(p), "TARGET=/srv/backup/web\n"));
  assert.deepEqual(read, ["/etc/virtnbdbackup/web 01-x.conf"]);
  assert.equal(env["DOMAIN"], "web 01-x");
  const [backup] = execStartLines(unit, PREFIX, instance, env);
  assert.deepEqual(backup!.argv, ["/usr/bin/virtnbdbackup", "--nocolor", "-U", "qemu:///system", "-d", "web 01-x", "-l", "auto", "-o", "/srv/backup/web"]);
});

interface StepResult {
  argv: string[];
  exitCode: number;
  all: string;
}

/** Runs the ExecStart= lines in order as systemd runs a oneshot service; stops at the first failure. */
async function runService(unit: Unit, instance: string, env: Record<string, string>): Promise<{ steps: StepResult[]; failed: boolean }> {
  const success = successExitCodes(unit);
  const steps: StepResult[] = [];
  for (const line of execStartLines(unit, PREFIX, instance, env)) {
    const [cmd, ...args] = line.argv;
    const r = await execa(cmd!, args, { env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", ...env }, extendEnv: false, reject: false, all: true, timeout: 240_000 });
    steps.push({ argv: line.argv, exitCode: r.exitCode ?? 1, all: String(r.all ?? "") });
    if (!success.has(r.exitCode ?? 1) && !line.ignoreFailure) return { steps, failed: true };
  }
  return { steps, failed: false };
}

test("the service's command lines with a domain's environment file: full, inc, pruning by PRUNE_OPTIONS, a busy domain is no failure", async (t) => {
  ensureBuilt();
  const d = await testDomain(t, { start: true });
  const work = await tempDir(t, "vnbt-units-run-");
  const confDir = join(work, "etc");
  const logs = join(work, "log");
  const lockDir = join(work, "lock");
  const target = join(work, "backup", d.name);
  const metrics = join(work, `virtnbdbackup-${d.name}.prom`);
  const record = join(work, "prune-args");
  await execa("mkdir", ["-p", confDir, logs, lockDir]);
  const prune = await pruneStandIn(work, record);
  const unitText = render(readFileSync(join(UNITS, `${PREFIX}@.service`), "utf8"), { backup: join(ROOT, "bin/virtnbdbackup.js"), prune, confDir });
  const unit = readUnit(unitText);
  // The test domain's name has dashes: the instance is its escaped form, %I gives it back.
  const instance = await escape(d.name);
  assert.notEqual(instance, d.name);
  const confFile = join(confDir, `${d.name}.conf`);
  const writeConf = (pruneOptions: string) =>
    writeFile(confFile, `URI=qemu:///system\nLEVEL=auto\nTARGET=${target}\nBACKUP_OPTIONS="-n --metrics-file ${metrics}"\nPRUNE_OPTIONS="${pruneOptions}"\n`);
  // What systemd adds: $LOGS_DIRECTORY for LogsDirectory=. The lock folder is the test's own.
  const envFor = () => ({
    ...serviceEnvironment(unit, PREFIX, instance, (p) => (existsSync(p) ? readFileSync(p, "utf8") : null)),
    LOGS_DIRECTORY: logs,
    VIRTNBDBACKUP_LOCK_DIR: lockDir,
  });
  const pruneCalls = async () => (existsSync(record) ? (await readFile(record, "utf8")).split("--\n").filter((c) => c !== "") : []);

  await writeConf("--keep-daily 7 --keep-weekly 4");
  const first = await runService(unit, instance, envFor());
  assert.equal(first.failed, false, first.steps.map((s) => `${s.argv.join(" ")} → ${s.exitCode}\n${s.all}`).join("\n"));
  assert.deepEqual(first.steps[0]!.argv.slice(1, 9), ["--nocolor", "-U", "qemu:///system", "-d", d.name, "-l", "auto", "-o"]);
  const files = await readdir(target);
  assert.ok(files.some((f) => /^sda\.full\.data$/.test(f)), `a full backup in ${target}: ${files.join(" ")}`);
  assert.match(readFileSync(metrics, "utf8"), new RegExp(`virtnbdbackup_last_run_exit_code\\{domain="${d.name}",level="auto"\\} 0`));
  assert.deepEqual(await pruneCalls(), [`--nocolor\n-U\nqemu:///system\n-L\n${logs}/prune.${d.name}.log\n--keep-daily\n7\n--keep-weekly\n4\n${target}\n`]);

  // No keep rules: the backup runs (an inc), the prune does not.
  await writeConf("");
  const second = await runService(unit, instance, envFor());
  assert.equal(second.failed, false, second.steps.map((s) => s.all).join("\n"));
  assert.ok((await readdir(target)).some((f) => /^sda\.inc\.virtnbdbackup\.1\.data$/.test(f)), "an inc after the full");
  assert.equal((await pruneCalls()).length, 1, "no prune without PRUNE_OPTIONS");

  // Another run holds the domain's lock: the backup exits 75, the unit does not fail. flock
  // without forking: the process killed at the end is the one holding the lock.
  await writeConf("--keep-last 3");
  const holder = execa("flock", ["--exclusive", "--no-fork", join(lockDir, lockFileName("qemu:///system", d.name)), "-c", "echo locked; exec sleep 60"], { reject: false });
  t.after(() => {
    holder.kill("SIGKILL");
  });
  await new Promise<void>((resolve, reject) => {
    holder.stdout!.once("data", () => resolve());
    holder.once("exit", () => reject(new Error("flock ended before taking the lock")));
  });
  const busy = await runService(unit, instance, envFor());
  assert.equal(busy.steps[0]!.exitCode, 75, busy.steps[0]!.all);
  assert.equal(busy.failed, false, "75 is in SuccessExitStatus=");
  assert.match(busy.steps[0]!.all, /Another backup of domain \[.*\] is running/);
  holder.kill("SIGKILL");
});
