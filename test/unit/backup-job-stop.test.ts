/** stopBackupJob: the abort, then libvirt asked until it reports no job (its teardown is over). */
import { test } from "node:test";
import assert from "node:assert/strict";
import { stopBackupJob } from "../../src/backup/job.js";
import * as C from "../../src/libvirt/constants.js";
import type { Domain } from "../../src/libvirt/domain.js";

function fakeDomain(reportsBeforeNone: number) {
  const calls: string[] = [];
  let left = reportsBeforeNone;
  const domain = {
    abortJob: async () => void calls.push("abort"),
    jobInfo: async () => {
      calls.push("jobInfo");
      return { type: left-- > 0 ? 2 /* VIR_DOMAIN_JOB_UNBOUNDED */ : C.VIR_DOMAIN_JOB_NONE };
    },
  } as unknown as Domain;
  return { domain, calls };
}

test("stopBackupJob returns once libvirt reports no job, not before", async () => {
  const { domain, calls } = fakeDomain(2);
  await stopBackupJob(domain);
  assert.deepEqual(calls, ["abort", "jobInfo", "jobInfo", "jobInfo"]);
});

test("stopBackupJob: a failed abort is the caller's to report; nothing is asked after it", async () => {
  const calls: string[] = [];
  const domain = {
    abortJob: async () => {
      calls.push("abort");
      throw new Error("no job");
    },
    jobInfo: async () => void calls.push("jobInfo"),
  } as unknown as Domain;
  await assert.rejects(stopBackupJob(domain), /no job/);
  assert.deepEqual(calls, ["abort"]);
});
