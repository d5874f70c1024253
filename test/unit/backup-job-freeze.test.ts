/**
 * startBackupJob around virDomainBackupBegin: the domain's state asked while the scratch
 * directory is still being made, no freeze tried when libvirt already said the domain has no
 * guest agent, the freeze and thaw otherwise, nothing frozen on a paused domain.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { startBackupJob, type JobStartOptions } from "../../src/backup/job.js";
import * as C from "../../src/libvirt/constants.js";
import type { Domain } from "../../src/libvirt/domain.js";
import type { SelectedDisk } from "../../src/libvirt/disk-selection.js";

const NOT_CONFIGURED = "argument unsupported: QEMU guest agent is not configured";

function fakeDomain(state: number) {
  const calls: string[] = [];
  const domain = {
    state: async () => {
      calls.push("state");
      return { state, reason: 0 };
    },
    fsFreeze: async () => {
      calls.push("freeze");
      return 2;
    },
    fsThaw: async () => {
      calls.push("thaw");
      return 2;
    },
    backupBegin: async () => void calls.push("begin"),
  } as unknown as Domain;
  return { domain, calls };
}

function run(domain: Domain, extra: Partial<JobStartOptions>) {
  const lines: string[] = [];
  const log = { debug() {}, info: (m: string) => lines.push(`INFO ${m}`), warning: (m: string) => lines.push(`WARNING ${m}`) };
  const started = startBackupJob({
    domain,
    disks: [{ target: "sda", format: "qcow2" } as SelectedDisk],
    server: { transport: "unix", socket: "/run/x.sock" },
    scratchDir: "/var/tmp",
    incremental: null,
    checkpoint: { name: "virtnbdbackup.0", parent: "" },
    pause: false,
    freezeMountpoints: null,
    log,
    ...extra,
  });
  return { started, lines };
}

test("the state is asked before the scratch directory is there; the freeze and begin only after", async () => {
  const { domain, calls } = fakeDomain(C.VIR_DOMAIN_RUNNING);
  let made!: () => void;
  const scratchDirReady = new Promise<void>((r) => (made = () => r()));
  const { started } = run(domain, { scratchDirReady });
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(calls, ["state"]);
  made();
  await started;
  assert.deepEqual(calls, ["state", "freeze", "begin", "thaw"]);
});

test("libvirt's 'not configured' from the guest-info call: no freeze tried, its words in the warning", async () => {
  const { domain, calls } = fakeDomain(C.VIR_DOMAIN_RUNNING);
  const { started, lines } = run(domain, { noGuestAgent: NOT_CONFIGURED });
  await started;
  assert.deepEqual(calls, ["state", "begin"]);
  assert.ok(lines.includes(`WARNING Guest agent is not responding, unable to freeze filesystems: ${NOT_CONFIGURED}`), lines.join("\n"));
});

test("a paused domain is not frozen, agent or not", async () => {
  for (const noGuestAgent of [null, NOT_CONFIGURED]) {
    const { domain, calls } = fakeDomain(C.VIR_DOMAIN_PAUSED);
    const { started, lines } = run(domain, { noGuestAgent });
    await started;
    assert.deepEqual(calls, ["state", "begin"]);
    assert.ok(lines.includes("INFO Skipping filesystem freeze: domain is paused."));
  }
});

test("a scratch directory that cannot be made fails the start before anything is asked of the guest", async () => {
  const { domain, calls } = fakeDomain(C.VIR_DOMAIN_RUNNING);
  const { started } = run(domain, { scratchDirReady: Promise.reject(new Error("Creating directory [/x] on [h] failed")) });
  await assert.rejects(started, /Creating directory/);
  assert.deepEqual(calls, ["state"]);
});
