import { test } from "node:test";
import assert from "node:assert/strict";
import { recordingLog } from "../helpers/recording-log.js";
import { chainCheckpoints, CheckpointError, checkpointProblem, foreignCheckpoints, highestIndex, planCheckpoint, removeAllForFull } from "../../src/backup/checkpoints.js";
import { tempDir } from "../helpers/tmp.js";
import { join } from "node:path";
import { checkpointIndex, checkpointName, isOwnCheckpointName } from "../../src/backupset/layout.js";
import { libvirtChainProblem } from "../../src/backup/chain-continuation.js";
import * as C from "../../src/libvirt/constants.js";
import type { Domain } from "../../src/libvirt/domain.js";
import { LibvirtError } from "../../src/libvirt/errors.js";


const fakeLog = recordingLog;

const cpXml = (name: string) => `<domaincheckpoint><name>${name}</name><disks><disk name='sda' checkpoint='bitmap'/></disks></domaincheckpoint>`;

/**
 * libvirt's side of checkpoints, as far as checkpoints.ts uses it: lookup by name (with the
 * checkpoint's xmlDesc, children and free), redefine from XML (fails for checkpoints whose bitmap is
 * broken), list all. Counts handles so a test can see each one freed.
 */
class FakeDomain {
  readonly calls: string[] = [];
  open = 0;
  constructor(
    readonly names: string[],
    readonly broken: ReadonlySet<string> = new Set(),
  ) {}

  private handle(name: string) {
    this.open++;
    let freed = false;
    return {
      name,
      xmlDesc: async (flags = 0) => {
        this.calls.push(`xmlDesc ${name} ${flags}`);
        return cpXml(name);
      },
      // A linear chain in `names` order: the next one is the child, all later ones the descendants.
      listAllChildren: async (flags = 0) => {
        this.calls.push(`children ${name} ${flags}`);
        const later = this.names.slice(this.names.indexOf(name) + 1);
        return (flags & C.VIR_DOMAIN_CHECKPOINT_LIST_DESCENDANTS ? later : later.slice(0, 1)).map((n) => this.handle(n));
      },
      // libvirt 9.0 refuses to delete with bitmaps when one is missing ("not found in backing chain"), changing nothing.
      delete: async (flags = 0) => {
        this.calls.push(`delete ${name} ${flags}`);
        if (flags === 0 && this.broken.has(name)) throw new LibvirtError(`internal error: bitmap '${name}' not found in backing chain of 'sda'`, C.VIR_ERR_INTERNAL_ERROR);
        this.names.splice(this.names.indexOf(name), 1);
      },
      free: () => {
        assert.equal(freed, false, `${name} freed twice`);
        freed = true;
        this.open--;
      },
    };
  }

  async checkpointLookupByName(name: string) {
    this.calls.push(`lookup ${name}`);
    if (!this.names.includes(name)) {
      throw new LibvirtError(`Domain checkpoint not found: no domain checkpoint with matching name '${name}'`, C.VIR_ERR_NO_DOMAIN_CHECKPOINT);
    }
    return this.handle(name);
  }

  async checkpointCreateXML(xml: string, flags = 0) {
    const name = /<name>(.*)<\/name>/.exec(xml)?.[1] ?? "?";
    this.calls.push(`create ${name} ${flags}`);
    if (this.broken.has(name)) {
      throw new LibvirtError(`checkpoint inconsistency: missing or broken bitmap '${name}' for disk 'sda'`, C.VIR_ERR_CHECKPOINT_INCONSISTENT);
    }
    return this.handle(name);
  }

  async listAllCheckpoints() {
    this.calls.push("list");
    return this.names.map((n) => this.handle(n));
  }

  get asDomain(): Domain {
    return this as unknown as Domain;
  }
}

const CPT = ["virtnbdbackup.0", "virtnbdbackup.1", "virtnbdbackup.2"];

test("copy and full: the first index without parent, whatever the .cpt says", () => {
  for (const level of ["copy", "full"] as const) {
    for (const cpt of [[], CPT]) {
      for (const offline of [false, true]) {
        const log = fakeLog();
        assert.deepEqual(planCheckpoint({ level, cpt, cptPath: "/b/vm.cpt", offline, chain: "", firstIndex: 0 }, log), { name: "virtnbdbackup.0", parent: "", level });
        assert.deepEqual(planCheckpoint({ level, cpt, cptPath: "/b/vm.cpt", offline, chain: "offsite", firstIndex: 7 }, log), { name: "virtnbdbackup.offsite.7", parent: "", level });
        assert.deepEqual(log.lines, []);
      }
    }
  }
});

test("inc online: the index after the set's highest, the last one as parent", () => {
  const log = fakeLog();
  assert.deepEqual(planCheckpoint({ level: "inc", cpt: CPT, cptPath: "/b/vm.cpt", offline: false, chain: "", firstIndex: 0 }, log), { name: "virtnbdbackup.3", parent: "virtnbdbackup.2", level: "inc" });
  assert.deepEqual(log.lines, ["INFO Next checkpoint id: [3].", "INFO Parent checkpoint name [virtnbdbackup.2]."]);
  assert.deepEqual(planCheckpoint({ level: "inc", cpt: ["virtnbdbackup.0"], cptPath: "/b/vm.cpt", offline: false, chain: "", firstIndex: 0 }, fakeLog()), { name: "virtnbdbackup.1", parent: "virtnbdbackup.0", level: "inc" });
});

test("inc in a later generation: numbering goes on from the set's names, not its length", () => {
  const gen2 = ["virtnbdbackup.5", "virtnbdbackup.6"];
  assert.deepEqual(planCheckpoint({ level: "inc", cpt: gen2, cptPath: "/b/vm.cpt", offline: false, chain: "", firstIndex: 0 }, fakeLog()), { name: "virtnbdbackup.7", parent: "virtnbdbackup.6", level: "inc" });
  const chain = ["virtnbdbackup.weekly.0", "virtnbdbackup.weekly.1"];
  assert.deepEqual(planCheckpoint({ level: "inc", cpt: chain, cptPath: "/b/vm.cpt", offline: false, chain: "weekly", firstIndex: 0 }, fakeLog()), { name: "virtnbdbackup.weekly.2", parent: "virtnbdbackup.weekly.1", level: "inc" });
});

test("diff online: the next (not created) name, the last checkpoint as parent, and the diff line", () => {
  const log = fakeLog();
  assert.deepEqual(planCheckpoint({ level: "diff", cpt: CPT, cptPath: "/b/vm.cpt", offline: false, chain: "", firstIndex: 0 }, log), { name: "virtnbdbackup.3", parent: "virtnbdbackup.2", level: "diff" });
  assert.ok(log.lines.includes("INFO Diff backup: saving delta since checkpoint: [virtnbdbackup.2]."), log.lines.join("\n"));
});

test("inc/diff offline: the newest checkpoint is both name and parent", () => {
  for (const level of ["inc", "diff"] as const) {
    const log = fakeLog();
    assert.deepEqual(planCheckpoint({ level, cpt: CPT, cptPath: "/b/vm.cpt", offline: true, chain: "", firstIndex: 0 }, log), { name: "virtnbdbackup.2", parent: "virtnbdbackup.2", level });
    assert.deepEqual(log.lines.slice(0, 3), [
      "INFO Next checkpoint id: [3].",
      "INFO Parent checkpoint name [virtnbdbackup.2].",
      "INFO Offline backup, using latest checkpoint, saving only delta.",
    ]);
  }
});

test("inc/diff with an empty .cpt: refused, online and offline", () => {
  for (const level of ["inc", "diff"] as const) {
    for (const offline of [false, true]) {
      const log = fakeLog();
      assert.throws(() => planCheckpoint({ level, cpt: [], cptPath: "/b/vm.cpt", offline, chain: "", firstIndex: 0 }, log), (e: unknown) => {
        assert.ok(e instanceof CheckpointError);
        assert.equal(e.message, "No existing checkpoints found, execute full backup first: the checkpoint list [/b/vm.cpt] is missing or empty.");
        return true;
      });
      assert.deepEqual(log.lines, []);
    }
  }
});

test("checkpointProblem: null for a sound checkpoint, libvirt's reason when missing, broken, or its XML cannot be read", async () => {
  const dom = new FakeDomain(["virtnbdbackup.0", "virtnbdbackup.1"], new Set(["virtnbdbackup.1"]));
  assert.equal(await checkpointProblem(dom.asDomain, "virtnbdbackup.0"), null);
  assert.match((await checkpointProblem(dom.asDomain, "virtnbdbackup.1")) ?? "", /missing or broken bitmap 'virtnbdbackup.1'/);
  assert.match((await checkpointProblem(dom.asDomain, "virtnbdbackup.7")) ?? "", /no domain checkpoint with matching name/);
  const unreadable = new FakeDomain(["virtnbdbackup.0"]);
  const lookup = unreadable.checkpointLookupByName.bind(unreadable);
  unreadable.checkpointLookupByName = async (name: string) => ({
    ...(await lookup(name)),
    xmlDesc: async () => {
      throw new LibvirtError("internal error", C.VIR_ERR_INVALID_ARG);
    },
  });
  assert.equal(await checkpointProblem(unreadable.asDomain, "virtnbdbackup.0"), "internal error");
  assert.equal(dom.open, 0);
  assert.equal(unreadable.open, 0);
});

test("foreignCheckpoints: names without 'virtnbdbackup', in libvirt's order; every handle freed", async () => {
  const none = new FakeDomain([]);
  assert.deepEqual(await foreignCheckpoints(none.asDomain), []);
  const ours = new FakeDomain(["virtnbdbackup.0", "virtnbdbackup.1", "old-virtnbdbackup.5", "virtnbdbackup.weekly.3"]);
  assert.deepEqual(await foreignCheckpoints(ours.asDomain), []);
  assert.equal(ours.open, 0);
  const mixed = new FakeDomain(["virtnbdbackup.0", "before-upgrade", "virtnbdbackup.1", "VirtNBDBackup.2", "virtnbd.3"]);
  assert.deepEqual(await foreignCheckpoints(mixed.asDomain), ["before-upgrade", "VirtNBDBackup.2", "virtnbd.3"]);
  assert.equal(mixed.open, 0);
  assert.deepEqual(mixed.calls, ["list"]);
});

test("chainCheckpoints: one chain's names by index; other chains, other names and foreign ones left out", async () => {
  const dom = new FakeDomain(["virtnbdbackup.10", "virtnbdbackup.weekly.0", "virtnbdbackup.2", "old-virtnbdbackup.5", "ext", "virtnbdbackup.weekly.x"]);
  assert.deepEqual(await chainCheckpoints(dom.asDomain, ""), ["virtnbdbackup.2", "virtnbdbackup.10"]);
  assert.deepEqual(await chainCheckpoints(dom.asDomain, "weekly"), ["virtnbdbackup.weekly.0"]);
  assert.equal(dom.open, 0);
});

test("names: the original's substring test for ours; a chain's index; the highest index", () => {
  assert.equal(isOwnCheckpointName("virtnbdbackup.0"), true);
  assert.equal(isOwnCheckpointName("x-virtnbdbackup"), true);
  assert.equal(isOwnCheckpointName("virtnbdback"), false);
  assert.equal(checkpointName(3), "virtnbdbackup.3");
  assert.equal(checkpointName(3, "weekly"), "virtnbdbackup.weekly.3");
  assert.equal(checkpointIndex("virtnbdbackup.3"), 3);
  assert.equal(checkpointIndex("virtnbdbackup.weekly.3"), null, "another chain's name");
  assert.equal(checkpointIndex("virtnbdbackup.weekly.3", "weekly"), 3);
  assert.equal(checkpointIndex("virtnbdbackup.3", "weekly"), null);
  assert.equal(checkpointIndex("virtnbdbackup.3x"), null);
  assert.equal(highestIndex([], ""), -1);
  assert.equal(highestIndex(["virtnbdbackup.2", "virtnbdbackup.11", "virtnbdbackup.weekly.40"], ""), 11);
});

test("libvirtChainProblem: the last checkpoint and every one libvirt made after it must be sound; descendants in one call", async () => {
  const names = ["virtnbdbackup.0", "virtnbdbackup.1", "virtnbdbackup.2", "virtnbdbackup.3"];
  const sound = new FakeDomain(names);
  assert.equal(await libvirtChainProblem(sound.asDomain, "virtnbdbackup.1"), null);
  assert.equal(sound.calls.filter((c) => c.startsWith("children")).length, 1);
  assert.equal(sound.open, 0, "every handle freed");
  const laterBroken = new FakeDomain(names, new Set(["virtnbdbackup.3"]));
  assert.match((await libvirtChainProblem(laterBroken.asDomain, "virtnbdbackup.1")) ?? "", /^checkpoint \[virtnbdbackup\.3\] made after \[virtnbdbackup\.1\] is unusable: .*missing or broken bitmap/);
  assert.equal(laterBroken.open, 0);
  const lastBroken = new FakeDomain(names, new Set(["virtnbdbackup.1"]));
  assert.match((await libvirtChainProblem(lastBroken.asDomain, "virtnbdbackup.1")) ?? "", /^checkpoint \[virtnbdbackup\.1\] is unusable: /);
});

test("removeAllForFull: children first, each deleted with its bitmaps without a check; a refused delete is checked, then metadata only", async (t) => {
  const dir = await tempDir(t);
  const sound = new FakeDomain(["virtnbdbackup.0", "virtnbdbackup.1", "virtnbdbackup.2"]);
  await removeAllForFull(sound.asDomain, join(dir, "none.cpt"), dir, "", false, fakeLog());
  assert.deepEqual(sound.calls.filter((c) => !c.startsWith("lookup")), ["list", "delete virtnbdbackup.2 0", "delete virtnbdbackup.1 0", "delete virtnbdbackup.0 0"]);
  assert.equal(sound.open, 0);

  const log = fakeLog();
  const broken = new FakeDomain(["virtnbdbackup.0", "virtnbdbackup.1", "virtnbdbackup.2"], new Set(["virtnbdbackup.1"]));
  await removeAllForFull(broken.asDomain, join(dir, "none.cpt"), dir, "", false, log);
  assert.deepEqual(broken.calls.filter((c) => !c.startsWith("lookup")), [
    "list",
    "delete virtnbdbackup.2 0",
    "delete virtnbdbackup.1 0",
    "xmlDesc virtnbdbackup.1 0",
    `create virtnbdbackup.1 ${C.VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE | C.VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE_VALIDATE}`,
    `delete virtnbdbackup.1 ${C.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY}`,
    "delete virtnbdbackup.0 0",
  ]);
  assert.deepEqual(broken.names, []);
  assert.ok(log.lines.includes("WARNING Checkpoint inconsistency detected, removing metadata for checkpoint."), log.lines.join("\n"));
  assert.equal(broken.open, 0);
});

test("libvirtChainProblem: checkpoints whose bitmaps qemu shows sound are not validated by libvirt; one libvirt does not know is unusable", async () => {
  const names = ["virtnbdbackup.0", "virtnbdbackup.1", "virtnbdbackup.2"];
  const dom = new FakeDomain(names, new Set(["virtnbdbackup.2"])); // libvirt would refuse .2
  assert.equal(await libvirtChainProblem(dom.asDomain, "virtnbdbackup.1", new Set(["virtnbdbackup.1", "virtnbdbackup.2"])), null);
  assert.deepEqual(dom.calls.filter((c) => c.startsWith("create")), [], "no validation");
  assert.match((await libvirtChainProblem(dom.asDomain, "virtnbdbackup.1", new Set(["virtnbdbackup.1"]))) ?? "", /checkpoint \[virtnbdbackup\.2\] made after/);
  assert.match((await libvirtChainProblem(dom.asDomain, "virtnbdbackup.5", new Set(["virtnbdbackup.5"]))) ?? "", /^checkpoint \[virtnbdbackup\.5\] is unusable: .*no domain checkpoint/);
  assert.equal(dom.open, 0);
});
