import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { DomainLock, lockDirectory, lockFileName } from "../../src/connect/domain-lock.js";
import { tempDir } from "../helpers/tmp.js";

const me = (pid: number) => ({ pid, started: "2026-12-04T00:00:00Z", output: "/backup/vm" });

test("one owner at a time; the refused caller learns who holds it; release frees it", async (t) => {
  const dir = await tempDir(t);
  const first = await DomainLock.acquire(dir, "qemu:///system", "vm", me(111));
  assert.ok(first instanceof DomainLock);
  assert.deepEqual(JSON.parse(await readFile(first.path, "utf8")), me(111));
  const second = await DomainLock.acquire(dir, "qemu:///system", "vm", me(222));
  assert.ok(!(second instanceof DomainLock));
  assert.deepEqual(second.heldBy, me(111));
  const otherDomain = await DomainLock.acquire(dir, "qemu:///system", "vm2", me(333));
  assert.ok(otherDomain instanceof DomainLock, "another domain has its own lock");
  const otherHost = await DomainLock.acquire(dir, "qemu+ssh://h/system", "vm", me(444));
  assert.ok(otherHost instanceof DomainLock, "the same name on another hypervisor too");
  await first.release();
  const third = await DomainLock.acquire(dir, "qemu:///system", "vm", me(555));
  assert.ok(third instanceof DomainLock);
  assert.deepEqual(JSON.parse(await readFile(third.path, "utf8")), me(555), "the new owner's record replaces the old");
  for (const l of [third, otherDomain, otherHost]) await l.release();
});

test("a SIGKILLed owner leaves the lock free (the kernel releases flock)", async (t) => {
  const dir = await tempDir(t);
  const script = `
    const { DomainLock } = await import(${JSON.stringify(new URL("../../src/connect/domain-lock.ts", import.meta.url).href)});
    const l = await DomainLock.acquire(${JSON.stringify(dir)}, "qemu:///system", "vm", { pid: process.pid, started: "now", output: "/b" });
    console.log(l instanceof DomainLock ? "locked" : "refused");
    setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  const said = await new Promise<string>((resolve) => child.stdout.once("data", (b: Buffer) => resolve(b.toString().trim())));
  assert.equal(said, "locked");
  const whileAlive = await DomainLock.acquire(dir, "qemu:///system", "vm", me(1));
  assert.ok(!(whileAlive instanceof DomainLock));
  assert.equal(whileAlive.heldBy?.pid, child.pid);
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGKILL");
  await exited;
  const after = await DomainLock.acquire(dir, "qemu:///system", "vm", me(2));
  assert.ok(after instanceof DomainLock, "free once its owner is gone");
  await after.release();
});

test("lock file names and the lock directory", () => {
  assert.match(lockFileName("qemu:///system", "web vm/1"), /^web_vm_1\.[0-9a-f]{12}\.lock$/);
  assert.notEqual(lockFileName("qemu:///system", "vm"), lockFileName("qemu+ssh://h/system", "vm"));
  assert.equal(lockDirectory({ VIRTNBDBACKUP_LOCK_DIR: "/x" }), "/x");
  if (process.getuid?.() === 0) assert.equal(lockDirectory({}), "/run/lock/virtnbdbackup");
  else assert.equal(lockDirectory({ XDG_RUNTIME_DIR: "/run/user/1000" }), join("/run/user/1000", `virtnbdbackup-${process.getuid?.()}`));
});
