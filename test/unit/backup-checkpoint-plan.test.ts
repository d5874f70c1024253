import { test } from "node:test";
import assert from "node:assert/strict";
import { recordingLog } from "../helpers/recording-log.js";
import {
  CheckpointError,
  foreignCheckpoints,
  isOurs,
  planCheckpoint,
  validateCheckpoint,
} from "../../src/backup/checkpoints.js";
import * as C from "../../src/libvirt/constants.js";
import type { Domain } from "../../src/libvirt/domain.js";
import { LibvirtError } from "../../src/libvirt/errors.js";

const REDEFINE_VALIDATE = C.VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE | C.VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE_VALIDATE;

const fakeLog = recordingLog;

const cpXml = (name: string) => `<domaincheckpoint><name>${name}</name><disks><disk name='sda' checkpoint='bitmap'/></disks></domaincheckpoint>`;

/**
 * libvirt's side of checkpoints, as far as checkpoints.ts uses it: lookup by name (with the
 * checkpoint's xmlDesc and free), redefine from XML (fails for checkpoints whose bitmap is
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

/** A domain that must not be touched (offline runs, copy, full). */
const untouchable = new Proxy(
  {},
  {
    get(_t, prop) {
      if (prop === "then") return undefined;
      throw new Error(`domain.${String(prop)} used`);
    },
  },
) as unknown as Domain;

const CPT = ["virtnbdbackup.0", "virtnbdbackup.1", "virtnbdbackup.2"];

test("copy and full: virtnbdbackup.0 without parent, whatever the .cpt says, the domain untouched", async () => {
  for (const level of ["copy", "full"] as const) {
    for (const cpt of [[], CPT]) {
      for (const offline of [false, true]) {
        const log = fakeLog();
        assert.deepEqual(await planCheckpoint(level, cpt, offline, untouchable, log), {
          name: "virtnbdbackup.0",
          parent: "",
          level,
          fellBack: false,
        });
        assert.deepEqual(log.lines, []);
      }
    }
  }
});

test("inc online: the next name after the .cpt, the last one as parent, validated by redefining its own XML", async () => {
  const dom = new FakeDomain(CPT);
  const log = fakeLog();
  assert.deepEqual(await planCheckpoint("inc", CPT, false, dom.asDomain, log), {
    name: "virtnbdbackup.3",
    parent: "virtnbdbackup.2",
    level: "inc",
    fellBack: false,
  });
  assert.deepEqual(log.lines, ["INFO Next checkpoint id: [3].", "INFO Parent checkpoint name [virtnbdbackup.2]."]);
  assert.deepEqual(dom.calls, ["lookup virtnbdbackup.2", "xmlDesc virtnbdbackup.2 0", `create virtnbdbackup.2 ${REDEFINE_VALIDATE}`]);
  assert.equal(dom.open, 0, "every checkpoint handle freed");
});

test("inc after a lone full: virtnbdbackup.1 with parent virtnbdbackup.0", async () => {
  const dom = new FakeDomain(["virtnbdbackup.0"]);
  const plan = await planCheckpoint("inc", ["virtnbdbackup.0"], false, dom.asDomain, fakeLog());
  assert.deepEqual(plan, { name: "virtnbdbackup.1", parent: "virtnbdbackup.0", level: "inc", fellBack: false });
});

test("diff online: the next (not created) name, the last checkpoint as parent, and the diff line", async () => {
  const dom = new FakeDomain(CPT);
  const log = fakeLog();
  assert.deepEqual(await planCheckpoint("diff", CPT, false, dom.asDomain, log), {
    name: "virtnbdbackup.3",
    parent: "virtnbdbackup.2",
    level: "diff",
    fellBack: false,
  });
  assert.ok(log.lines.includes("INFO Diff backup: saving delta since checkpoint: [virtnbdbackup.2]."), log.lines.join("\n"));
  assert.ok(!log.lines.some((l) => l.startsWith("WARNING")));
  assert.equal(dom.open, 0);
});

test("inc/diff online, parent unknown to libvirt: falls back to full, keeping the next name", async () => {
  for (const level of ["inc", "diff"] as const) {
    const dom = new FakeDomain(["virtnbdbackup.0", "virtnbdbackup.1"]);
    const log = fakeLog();
    assert.deepEqual(await planCheckpoint(level, CPT, false, dom.asDomain, log), {
      name: "virtnbdbackup.3",
      parent: "",
      level: "full",
      fellBack: true,
    });
    assert.ok(log.lines.includes("WARNING Checkpoint [virtnbdbackup.2] is invalid, switching backup to full."), log.lines.join("\n"));
    assert.deepEqual(dom.calls, ["lookup virtnbdbackup.2"]);
    assert.equal(dom.open, 0);
  }
});

test("inc online, parent's bitmap broken (redefine-validate refused): falls back to full", async () => {
  const dom = new FakeDomain(CPT, new Set(["virtnbdbackup.2"]));
  const log = fakeLog();
  assert.deepEqual(await planCheckpoint("inc", CPT, false, dom.asDomain, log), {
    name: "virtnbdbackup.3",
    parent: "",
    level: "full",
    fellBack: true,
  });
  assert.deepEqual(log.lines, [
    "INFO Next checkpoint id: [3].",
    "INFO Parent checkpoint name [virtnbdbackup.2].",
    "WARNING Checkpoint [virtnbdbackup.2] is invalid, switching backup to full.",
  ]);
  assert.equal(dom.open, 0, "the looked-up parent is freed although validation failed");
});

test("a broken older checkpoint does not matter: only the parent is validated", async () => {
  const dom = new FakeDomain(CPT, new Set(["virtnbdbackup.0", "virtnbdbackup.1"]));
  const plan = await planCheckpoint("inc", CPT, false, dom.asDomain, fakeLog());
  assert.equal(plan.fellBack, false);
  assert.ok(dom.calls.every((c) => c.includes("virtnbdbackup.2")), dom.calls.join(", "));
});

test("inc/diff offline: the newest checkpoint is both name and parent, nothing validated", async () => {
  for (const level of ["inc", "diff"] as const) {
    for (const domain of [null, untouchable]) {
      const log = fakeLog();
      assert.deepEqual(await planCheckpoint(level, CPT, true, domain, log), {
        name: "virtnbdbackup.2",
        parent: "virtnbdbackup.2",
        level,
        fellBack: false,
      });
      assert.deepEqual(log.lines.slice(0, 3), [
        "INFO Next checkpoint id: [3].",
        "INFO Parent checkpoint name [virtnbdbackup.2].",
        "INFO Offline backup, using latest checkpoint, saving only delta.",
      ]);
      assert.ok(!log.lines.some((l) => l.startsWith("WARNING")));
    }
  }
});

test("inc/diff with an empty .cpt: refused, online and offline", async () => {
  for (const level of ["inc", "diff"] as const) {
    for (const offline of [false, true]) {
      const log = fakeLog();
      await assert.rejects(planCheckpoint(level, [], offline, untouchable, log), (e: unknown) => {
        assert.ok(e instanceof CheckpointError);
        assert.equal(e.message, "No existing checkpoints found, execute full backup first.");
        return true;
      });
      assert.deepEqual(log.lines, []);
    }
  }
});

test("validateCheckpoint: true for a sound checkpoint, false when missing, broken, or its XML cannot be read", async () => {
  const dom = new FakeDomain(["virtnbdbackup.0", "virtnbdbackup.1"], new Set(["virtnbdbackup.1"]));
  assert.equal(await validateCheckpoint(dom.asDomain, "virtnbdbackup.0"), true);
  assert.equal(await validateCheckpoint(dom.asDomain, "virtnbdbackup.1"), false);
  assert.equal(await validateCheckpoint(dom.asDomain, "virtnbdbackup.7"), false);
  const unreadable = new FakeDomain(["virtnbdbackup.0"]);
  const lookup = unreadable.checkpointLookupByName.bind(unreadable);
  unreadable.checkpointLookupByName = async (name: string) => ({
    ...(await lookup(name)),
    xmlDesc: async () => {
      throw new LibvirtError("internal error", C.VIR_ERR_INVALID_ARG);
    },
  });
  assert.equal(await validateCheckpoint(unreadable.asDomain, "virtnbdbackup.0"), false);
  assert.equal(dom.open, 0);
  assert.equal(unreadable.open, 0);
});

test("foreignCheckpoints: names without 'virtnbdbackup', in libvirt's order; every handle freed", async () => {
  const none = new FakeDomain([]);
  assert.deepEqual(await foreignCheckpoints(none.asDomain), []);
  const ours = new FakeDomain(["virtnbdbackup.0", "virtnbdbackup.1", "old-virtnbdbackup.5"]);
  assert.deepEqual(await foreignCheckpoints(ours.asDomain), []);
  assert.equal(ours.open, 0);
  const mixed = new FakeDomain(["virtnbdbackup.0", "before-upgrade", "virtnbdbackup.1", "VirtNBDBackup.2", "virtnbd.3"]);
  assert.deepEqual(await foreignCheckpoints(mixed.asDomain), ["before-upgrade", "VirtNBDBackup.2", "virtnbd.3"]);
  assert.equal(mixed.open, 0);
  assert.deepEqual(mixed.calls, ["list"]);
});

test("isOurs: the original's substring test", () => {
  assert.equal(isOurs("virtnbdbackup.0"), true);
  assert.equal(isOurs("x-virtnbdbackup"), true);
  assert.equal(isOurs("virtnbdback"), false);
  assert.equal(isOurs(""), false);
});
