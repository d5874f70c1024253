/**
 * Backup phases alone, on a fake run context (no libvirtd): the disk choice and the level it
 * allows, the refusal of an inc whose last checkpoint has no data file, and checkpoint planning
 * with `-p`/`-T` for an offline domain.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { planCheckpoints } from "../../src/backup/job-phases.js";
import type { BackupArgs } from "../../src/backup/options.js";
import { chooseDisks, refuseMissingData } from "../../src/backup/preflight.js";
import { BackupRefusal, type Preflight, type RunContext } from "../../src/backup/run-context.js";
import { DomainXml } from "../../src/libvirt/domain-xml.js";
import type { SelectedDisk } from "../../src/libvirt/disk-selection.js";
import { recordingLog } from "../helpers/recording-log.js";
import { tempDir } from "../helpers/tmp.js";

/** A run context with only what these phases read; log lines are recorded as "LEVEL message". */
function context(outDir: string, args: Partial<BackupArgs> = {}): RunContext & { lines: string[] } {
  const log = recordingLog();
  return {
    lines: log.lines,
    args: { include: null, exclude: null, raw: false, printonly: false, threshold: null, ...args } as BackupArgs,
    log,
    outDir,
    cptPath: join(outDir, "vm.cpt"),
    stdoutMode: false,
    checkpointDir: join(outDir, "checkpoints"),
    chain: "",
  } as unknown as RunContext & { lines: string[] };
}

const disk = (dev: string, format: string, extra = "") =>
  `<disk type='file' device='disk'><driver name='qemu' type='${format}'/><source file='/img/${dev}.${format}'/><target dev='${dev}' bus='virtio'/>${extra}</disk>`;
const domain = (...disks: string[]) => DomainXml.parse(`<domain type='kvm'><name>vm</name><devices>${disks.join("")}</devices></domain>`);

test("chooseDisks: qcow2 disks keep the level; only raw disks switch to copy; --raw disks leave an inc", async (t) => {
  const dir = await tempDir(t);
  const r = context(dir);
  const both = await chooseDisks(r, domain(disk("vda", "qcow2"), disk("vdb", "raw")), "inc");
  assert.deepEqual(both.disks.map((d) => d.target), ["vda"]);
  assert.equal(both.level, "inc");
  const rawOnly = await chooseDisks(context(dir, { raw: true }), domain(disk("vdb", "raw")), "full");
  assert.equal(rawOnly.level, "copy");
  const withRaw = context(dir, { raw: true });
  const inc = await chooseDisks(withRaw, domain(disk("vda", "qcow2"), disk("vdb", "raw")), "inc");
  assert.deepEqual(inc.disks.map((d) => d.target), ["vda"]);
  assert.ok(withRaw.lines.includes("WARNING Raw disks can't be included during incremental or differential backup."), withRaw.lines.join("\n"));
  const tpm = context(dir);
  await chooseDisks(tpm, DomainXml.parse(`<domain><name>vm</name><devices>${disk("vda", "qcow2")}<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm></devices></domain>`), "full");
  assert.ok(!tpm.lines.some((l) => l.startsWith("WARNING")), "an emulated TPM's state is saved with the set now: no warning");
});

test("refuseMissingData: the last checkpoint of the .cpt needs its data file (full for .0, inc after)", async (t) => {
  const dir = await tempDir(t);
  const r = context(dir);
  const disks = [{ target: "vda", raw: false }, { target: "vdb", raw: true }] as SelectedDisk[];
  await refuseMissingData(r, [], disks);
  await assert.rejects(refuseMissingData(r, ["virtnbdbackup.0"], disks), (e: unknown) => {
    assert.ok(e instanceof BackupRefusal);
    assert.match(e.lines[0]!, /Checkpoint \[virtnbdbackup\.0\] is listed in \[.*vm\.cpt\] but its data file \[vda\.full\.data\] is missing/);
    return true;
  });
  await writeFile(join(dir, "vda.full.data"), "");
  await refuseMissingData(r, ["virtnbdbackup.0"], disks);
  await assert.rejects(refuseMissingData(r, ["virtnbdbackup.0", "virtnbdbackup.1"], disks), /vda\.inc\.virtnbdbackup\.1\.data\] is missing/);
  await writeFile(join(dir, "vda.inc.virtnbdbackup.1.data"), "");
  await refuseMissingData(r, ["virtnbdbackup.0", "virtnbdbackup.1"], disks); // the raw disk needs none
  // A disk added since the full: not this check's business (the chain check refuses or heals it).
  await refuseMissingData(r, ["virtnbdbackup.0", "virtnbdbackup.1"], [...disks, { target: "vdc", raw: false } as SelectedDisk]);
});

test("planCheckpoints: offline inc builds on the last checkpoint, names its files <name>.<unix time>; copy is 'copy'", async (t) => {
  const dir = await tempDir(t);
  const r = context(dir);
  const domain = { listAllCheckpoints: async () => [] };
  const base = { domain, offline: true, cpt: ["virtnbdbackup.0", "virtnbdbackup.1"], disks: [], workers: 1, firstIndex: 0 } as unknown as Preflight;
  const inc = await planCheckpoints(r, { ...base, level: "inc" }, { setChanged: false });
  assert.equal(inc.plan.name, "virtnbdbackup.1");
  assert.equal(inc.level, "inc");
  assert.match(inc.ident, /^virtnbdbackup\.1\.\d+$/);
  assert.equal(inc.done, undefined);
  const copy = await planCheckpoints(r, { ...base, level: "copy" }, { setChanged: false });
  assert.equal(copy.ident, "copy");
  assert.ok(r.lines.includes("INFO Checkpoint handling."));
});
