/**
 * virtnbdprune on synthetic chains (test/helpers/prune-sets.ts) in every layout it reads: the
 * real command, real files. The keep rules' fine points are in test/unit/prune-retention.test.ts;
 * real backups of a real domain (restores, checkpoints, kills, a running backup) in
 * prune-live.test.ts.
 */
import { describe, it, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ourPrune, type ToolResult } from "../helpers/our-tool.js";
import { writeChainDir, writeChainZips } from "../helpers/prune-sets.js";
import { tempDir } from "../helpers/tmp.js";
import { DomainLock } from "../../src/connect/domain-lock.js";
import { checkEvents } from "../helpers/events.js";

/** libvirt's in-process test driver: no domain of ours exists there, so no checkpoint is touched. */
const URI = "test:///default";

async function prune(t: TestContext, args: string[], lockDir: string): Promise<ToolResult> {
  const r = await ourPrune(["-U", URI, "-L", join(lockDir, "prune.log"), ...args], { env: { ...process.env, VIRTNBDBACKUP_LOCK_DIR: lockDir } });
  t.diagnostic(r.all);
  return r;
}

/** Every path under `dir`, relative, sorted: to show that a run changed nothing. */
async function tree(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).map(String).sort();
}

const infoLines = (r: ToolResult, word: string) => r.stderr.split("\n").filter((l) => l.includes(` ${word} [`));

describe("virtnbdprune on chains of every layout", () => {
  it("a target with generations: dry run changes nothing; generation 1 goes file by file, later ones as folders", async (t) => {
    const base = await tempDir(t, "vnbt-prune-");
    const target = join(base, "web");
    await writeChainDir(target, { domain: "web", start: "2026-10-01 02:00", incs: 2, diffs: 2 });
    await writeChainDir(join(target, "generation.2"), { domain: "web", start: "2026-11-01 02:00", incs: 1, first: 3 });
    await writeChainDir(join(target, "generation.3"), { domain: "web", start: "2026-12-01 02:00", incs: 1, first: 5 });
    const before = await tree(target);

    const dry = await prune(t, ["--keep-last", "1", "--dry-run", target], base);
    assert.equal(dry.exitCode, 0);
    assert.deepEqual(await tree(target), before, "a dry run changes nothing");
    assert.equal(infoLines(dry, "Would remove").length, 2);
    assert.match(dry.stderr, /Keep \[.*generation\.3\] \(2026-12-01 02:00:00, 2 backups\): keep-last 1/);
    assert.match(dry.stderr, /Would remove \[.*web\] \(2026-10-01 02:00:00, 5 backups\): no keep rule selects it/);

    const r = await prune(t, ["--keep-last", "2", "-v", target], base);
    const removed = r.stderr.split("\n").flatMap((l) => /Prune step: removed \[.*\/web\/(sda\.[^\]]+\.data)\]$/.exec(l)?.[1] ?? []);
    assert.deepEqual(
      removed.map((n) => n.replace(/diff\.\d+/, "diff")),
      ["sda.diff.data", "sda.diff.data", "sda.inc.virtnbdbackup.2.data", "sda.inc.virtnbdbackup.1.data", "sda.full.data"],
      "dependants newest first, the full last",
    );
    assert.equal(r.exitCode, 0);
    assert.deepEqual(readdirSync(target).sort(), ["generation.2", "generation.3"], "generation 1's files are gone, the folders stay");
    assert.deepEqual(await tree(join(target, "generation.3")), before.filter((p) => p.startsWith("generation.3/")).map((p) => p.slice("generation.3/".length)));

    const again = await prune(t, ["--keep-last", "1", target], base);
    assert.equal(again.exitCode, 0);
    assert.deepEqual(readdirSync(target).sort(), ["generation.3"], "generation.2 went as a whole, nothing left aside");
    assert.match(again.stderr, /Removed \[1\] of \[2\] chains\./);
  });

  it("monthly folders of two domains (the original's numbering restarts in each): rules apply per domain", async (t) => {
    const base = await tempDir(t, "vnbt-prune-");
    for (const month of ["09", "10", "11"]) await writeChainDir(join(base, "web", `2026-${month}`), { domain: "web", start: `2026-${month}-01 01:00`, incs: 3 });
    await writeChainDir(join(base, "db", "2026-11"), { domain: "db", start: "2026-11-02 01:00" });
    const r = await prune(t, ["--keep-monthly", "2", base], base);
    assert.equal(r.exitCode, 0);
    assert.deepEqual(readdirSync(join(base, "web")).sort(), ["2026-10", "2026-11"]);
    assert.ok(existsSync(join(base, "db", "2026-11", "sda.full.data")), "the other domain's only chain stays");
    assert.match(r.stderr, /domain \[web\]: \[3\] chains/);
    assert.match(r.stderr, /domain \[db\]: \[1\] chain\b/);
  });

  it("daily chains against keep-daily 3 keep-weekly 2: the survivors of PBS's rules", async (t) => {
    const base = await tempDir(t, "vnbt-prune-");
    for (let day = 11; day <= 30; day++) await writeChainDir(join(base, "vm", `2026-11-${day}`), { domain: "vm", start: `2026-11-${day} 02:00` });
    const r = await prune(t, ["--keep-daily", "3", "--keep-weekly", "2", base], base);
    assert.equal(r.exitCode, 0);
    // daily: 30, 29, 28; weekly: week 49 (30) and 48 (28, 29) are covered, so 22 (week 47) and 15 (week 46)
    assert.deepEqual(readdirSync(join(base, "vm")).sort(), ["2026-11-15", "2026-11-22", "2026-11-28", "2026-11-29", "2026-11-30"]);
  });

  it("zip archives: a chain of archives goes dependants first, an archive that continues nothing stays", async (t) => {
    const base = await tempDir(t, "vnbt-prune-");
    const dir = join(base, "zips");
    const old = await writeChainZips(dir, "a", { domain: "web", start: "2026-10-01 02:00", incs: 1 });
    const kept = await writeChainZips(dir, "b", { domain: "web", start: "2026-11-01 02:00", incs: 1, first: 2 });
    const stray = await writeChainZips(join(base, "stray"), "c", { domain: "web", start: "2026-09-01 02:00", incs: 1, first: 7 });
    const orphan = join(dir, "z-orphan.zip");
    await writeFile(orphan, (await import("node:fs")).readFileSync(stray[1]!));
    const r = await prune(t, ["--keep-last", "1", "-v", dir], base);
    assert.equal(r.exitCode, 0);
    assert.deepEqual(readdirSync(dir).sort(), [...kept.map((p) => p.slice(dir.length + 1)), "z-orphan.zip"].sort());
    assert.match(r.stderr, /WARNING .*z-orphan\.zip\] continues no chain .*left alone/);
    const steps = r.stderr.split("\n").filter((l) => l.includes("Prune step: removed"));
    assert.deepEqual(steps.map((l) => /removed \[(.*)\]$/.exec(l)![1]), [old[1], old[0]], "the inc archive before the full one");
  });

  it("a generation a run writes into stays whatever the rules say; a named chain is weighed apart", async (t) => {
    const base = await tempDir(t, "vnbt-prune-");
    await writeChainDir(join(base, "a"), { domain: "web", start: "2026-10-01 02:00" });
    await writeFile(join(base, "a", "web.run.partial"), "{}");
    await writeChainDir(join(base, "b"), { domain: "web", start: "2026-11-01 02:00" });
    await writeChainDir(join(base, "weekly"), { domain: "web", start: "2026-09-01 02:00", chain: "weekly" });
    const r = await prune(t, ["--keep-last", "1", base], base);
    assert.equal(r.exitCode, 0);
    assert.deepEqual(readdirSync(base).filter((n) => !n.endsWith(".log")).sort(), ["a", "b", "weekly"]);
    assert.match(r.stderr, /Keep \[.*\/a\] .*: a backup run writes here or was left unfinished \(\[web\.run\.partial\]\)/);
    assert.match(r.stderr, /domain \[web\] chain \[weekly\]: \[1\] chain/);
  });

  it("a folder a killed prune left aside is removed by the next run (listed by a dry run)", async (t) => {
    const base = await tempDir(t, "vnbt-prune-");
    await writeChainDir(join(base, "vm", "2026-12"), { domain: "vm", start: "2026-12-01 02:00" });
    await writeChainDir(join(base, "vm", ".2026-11.pruning"), { domain: "vm", start: "2026-11-01 02:00", incs: 1 });
    const dry = await prune(t, ["--dry-run", base], base);
    assert.match(dry.stderr, /Would finish removing \[.*\.2026-11\.pruning\]/);
    assert.ok(existsSync(join(base, "vm", ".2026-11.pruning")));
    const r = await prune(t, [base], base);
    assert.equal(r.exitCode, 0);
    assert.deepEqual(readdirSync(join(base, "vm")), ["2026-12"]);
  });

  it("a domain whose backup holds the lock is left alone, exit 75", async (t) => {
    const base = await tempDir(t, "vnbt-prune-");
    await writeChainDir(join(base, "vm", "1"), { domain: "vm", start: "2026-10-01 02:00" });
    await writeChainDir(join(base, "vm", "2"), { domain: "vm", start: "2026-11-01 02:00" });
    const lock = await DomainLock.acquire(base, URI, "vm", { pid: 4242, started: "then", output: "/backup/vm/3" });
    assert.ok(lock instanceof DomainLock);
    try {
      const before = await tree(base);
      const r = await prune(t, ["--keep-last", "1", join(base, "vm")], base);
      assert.equal(r.exitCode, 75);
      assert.match(r.stderr, /WARNING .*A backup of domain \[vm\] is running \(pid 4242, started then, into \[\/backup\/vm\/3\]\): its chains are left alone/);
      assert.deepEqual((await tree(base)).filter((p) => !p.endsWith(".log")), before.filter((p) => !p.endsWith(".log")));
    } finally {
      await lock.release();
    }
  });

  it("--json: a chain event per chain (dry run and real), chain-removed, run-end; valid against the schema", async (t) => {
    const base = await tempDir(t, "vnbt-prune-");
    for (const month of ["10", "11", "12"]) await writeChainDir(join(base, "vm", `2026-${month}`), { domain: "vm", start: `2026-${month}-01 01:00`, incs: 1 });
    const dry = await prune(t, ["--json", "--keep-last", "1", "--dry-run", base], base);
    assert.equal(dry.exitCode, 0);
    const dryEvents = checkEvents(`${dry.stderr}\n`);
    const chains = dryEvents.filter((e) => e.event === "chain");
    assert.deepEqual(
      chains.map((e) => [e["started"], e["decision"], e["dryRun"]]),
      [
        ["2026-12-01T01:00:00", "keep", true],
        ["2026-11-01T01:00:00", "remove", true],
        ["2026-10-01T01:00:00", "remove", true],
      ],
    );
    assert.equal(dryEvents.at(-1)!.event, "run-end");
    const real = await prune(t, ["--json", "--keep-last", "1", base], base);
    const events = checkEvents(`${real.stderr}\n`);
    assert.deepEqual(events.filter((e) => e.event === "chain-removed").map((e) => e["location"]), [join(base, "vm", "2026-11"), join(base, "vm", "2026-10")]);
    assert.deepEqual(events.at(-1)!["exitCode"], 0);
    assert.equal(events[0]!.event, "run-start");
    assert.equal(events[0]!.tool, "virtnbdprune");
  });

  it("bad input: one line and the documented exit code", async (t) => {
    const base = await tempDir(t, "vnbt-prune-");
    const missing = await prune(t, ["--keep-last", "1", join(base, "nothing")], base);
    assert.equal(missing.exitCode, 1);
    assert.match(missing.stderr, /ERROR .*Unable to read backups: .*nothing/);
    await mkdir(join(base, "broken"));
    await writeChainDir(join(base, "broken"), { domain: "vm", start: "2026-10-01 02:00" });
    await writeFile(join(base, "broken", "sda.full.data"), "not a stream");
    const broken = await prune(t, ["--keep-last", "1", join(base, "broken")], base);
    assert.equal(broken.exitCode, 1);
    assert.match(broken.stderr, /ERROR .*Unable to read the metadata of \[.*broken\/sda\.full\.data\]/);
    const negative = await prune(t, ["--keep-last", "-1", base], base);
    assert.equal(negative.exitCode, 2);
    assert.match(negative.stderr, /error: argument --keep-last: must not be negative/);
    const none = await prune(t, ["--keep-last", "1"], base);
    assert.equal(none.exitCode, 2);
    assert.match(none.stderr, /the following arguments are required: PATH/);
  });
});
