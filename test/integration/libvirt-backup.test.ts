// Pull-mode backup jobs on a running TCG domain: begin (full with checkpoint, then incremental),
// block job / job info while running, read the exports through NBD (nbdcopy, nbdinfo), abort.
// Also the broken-bitmap error (VIR_ERR_CHECKPOINT_INCONSISTENT) the original reports specially.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { chmod, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import {
  LibvirtError,
  buildBackupXml,
  buildCheckpointXml,
  parseCheckpointXml,
  scratchFilePath,
} from "../../src/libvirt/index.js";
import * as C from "../../src/libvirt/constants.js";
import { MiB, testDomain, type TestDomain } from "../helpers/domains.js";

const execFileP = promisify(execFile);

interface Extent {
  offset: number;
  length: number;
  type: number;
}

async function nbdMap(uri: string, context: string): Promise<Extent[]> {
  const { stdout } = await execFileP("nbdinfo", ["--json", `--map=${context}`, uri]);
  return JSON.parse(stdout) as Extent[];
}

function nbdHash(uri: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("nbdcopy", [uri, "-"], { stdio: ["ignore", "pipe", "pipe"] });
    const hash = createHash("sha256");
    let err = "";
    child.stdout.on("data", (b: Buffer) => hash.update(b));
    child.stderr.on("data", (b: Buffer) => (err += b.toString()));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(hash.digest("hex")) : reject(new Error(`nbdcopy: ${err}`))));
  });
}

async function jobDirs(d: TestDomain): Promise<{ socket: string; scratch: string }> {
  const socketDir = join(d.dir, "backup-socket");
  const scratch = join(d.dir, "scratch");
  for (const dir of [socketDir, scratch]) {
    await mkdir(dir, { recursive: true });
    await chmod(dir, 0o1777); // qemu (libvirt-qemu) creates the socket and writes scratch data
  }
  return { socket: join(socketDir, "virtnbdbackup.sock"), scratch };
}

/** Ranges marked dirty (type 1) in a dirty-bitmap map. */
function dirtyRanges(map: Extent[]): Array<[number, number]> {
  return map.filter((e) => e.type === 1).map((e) => [e.offset, e.offset + e.length]);
}

function covers(ranges: Array<[number, number]>, start: number, end: number): boolean {
  return ranges.some(([s, e]) => s <= start && e >= end);
}

function overlaps(ranges: Array<[number, number]>, start: number, end: number): boolean {
  return ranges.some(([s, e]) => s < end && e > start);
}

test("pull-mode full then incremental backup: exports read through NBD, job info, abort", async (t) => {
  const d = await testDomain(t, { disks: [{}, { size: 16 * MiB }], start: true });
  const dom = d.domain;
  const { socket, scratch } = await jobDirs(d);
  const expected = { sda: d.expectedHash("sda"), sdb: d.expectedHash("sdb") };
  assert.equal(await dom.defaultBackupFlags(), 0, "libvirt 9.0: no PRESERVE_SHUTDOWN_DOMAIN");

  const backupXml = buildBackupXml({
    server: { transport: "unix", socket },
    disks: ["sda", "sdb"].map((name) => ({ name, scratchFile: scratchFilePath(scratch, name) })),
  });
  await dom.backupBegin(backupXml, buildCheckpointXml({ name: "virtnbdbackup.0", disks: ["sda", "sdb"] }));
  let aborted = false;
  try {
    const job = await dom.blockJobInfo("sda");
    assert.equal(job?.type, C.VIR_DOMAIN_BLOCK_JOB_TYPE_BACKUP);
    assert.equal((await dom.blockJobInfo("sdb"))?.type, C.VIR_DOMAIN_BLOCK_JOB_TYPE_BACKUP);
    assert.notEqual((await dom.jobInfo()).type, C.VIR_DOMAIN_JOB_NONE);
    const stats = await dom.jobStats();
    assert.equal(stats.params["operation"], C.VIR_DOMAIN_JOB_OPERATION_BACKUP);
    const running = await dom.backupXmlDesc();
    assert.match(running, /<domainbackup mode='pull'/);
    assert.ok(running.includes(`socket='${socket}'`), running);
    assert.deepEqual((await dom.listAllCheckpoints()).map((c) => c.name), ["virtnbdbackup.0"]);

    // The guest keeps writing; the export shows the point in time of backupBegin.
    await d.writePattern("sda", 0, MiB, 0x77);
    await d.writeRandom("sda", 20 * MiB, 3 * MiB, 42);
    const uri = (dev: string) => `nbd+unix:///${dev}?socket=${socket}`;
    assert.equal(await nbdHash(uri("sda")), expected.sda);
    assert.equal(await nbdHash(uri("sdb")), expected.sdb);
    const alloc = await nbdMap(uri("sda"), "base:allocation");
    assert.equal(alloc.reduce((n, e) => n + e.length, 0), 64 * MiB);
    assert.ok(alloc.some((e) => (e.type & 1) === 1), "holes are reported");

    await dom.abortJob();
    aborted = true;
    assert.equal(await dom.blockJobInfo("sda"), null);
  } finally {
    if (!aborted) await dom.abortJob().catch(() => undefined);
  }
  // After the job the live disk has the new data.
  assert.equal(await d.diskHash("sda"), d.expectedHash("sda"));
  const cp0 = parseCheckpointXml(await (await dom.checkpointLookupByName("virtnbdbackup.0")).xmlDesc(C.VIR_DOMAIN_CHECKPOINT_XML_SIZE));
  assert.ok(cp0.disks.find((x) => x.name === "sda")!.size! >= 4 * MiB);

  // Incremental: the dirty bitmap since virtnbdbackup.0 is exported as qemu:dirty-bitmap:backup-<dev>.
  const incXml = buildBackupXml({
    server: { transport: "unix", socket },
    disks: [{ name: "sda", scratchFile: scratchFilePath(scratch, "sda") }],
    incremental: "virtnbdbackup.0",
  });
  await dom.backupBegin(
    incXml,
    buildCheckpointXml({ name: "virtnbdbackup.1", parent: "virtnbdbackup.0", disks: ["sda"] }),
  );
  try {
    const uri = `nbd+unix:///sda?socket=${socket}`;
    const dirty = dirtyRanges(await nbdMap(uri, "qemu:dirty-bitmap:backup-sda"));
    assert.ok(covers(dirty, 0, MiB), JSON.stringify(dirty));
    assert.ok(covers(dirty, 20 * MiB, 23 * MiB), JSON.stringify(dirty));
    assert.ok(!overlaps(dirty, 4 * MiB, 6 * MiB), "untouched data is clean");
    assert.ok(!overlaps(dirty, 30 * MiB, 60 * MiB), "untouched holes are clean");
    assert.equal(await nbdHash(uri), d.expectedHash("sda"));
    await assert.rejects(execFileP("nbdinfo", [`nbd+unix:///sdb?socket=${socket}`]), "sdb is not part of this job");
  } finally {
    await dom.abortJob();
  }
  const cp1 = await dom.checkpointLookupByName("virtnbdbackup.1");
  assert.equal((await cp1.parent()).name, "virtnbdbackup.0");
});

test("a missing bitmap: backupBegin and redefine fail with VIR_ERR_CHECKPOINT_INCONSISTENT", async (t) => {
  const d = await testDomain(t, { disks: [{ size: 16 * MiB }], start: true });
  const { socket, scratch } = await jobDirs(d);
  const cp = await d.domain.checkpointCreateXML(buildCheckpointXml({ name: "virtnbdbackup.0", disks: ["sda"] }));
  const cpXml = await cp.xmlDesc();
  await d.destroy();
  // Remove the persistent bitmap behind libvirt's back.
  await execFileP("qemu-img", ["bitmap", "--remove", d.disks[0]!.path, "virtnbdbackup.0"]);
  await d.start();
  await assert.rejects(
    d.domain.backupBegin(
      buildBackupXml({
        server: { transport: "unix", socket },
        disks: [{ name: "sda", scratchFile: scratchFilePath(scratch, "sda") }],
        incremental: "virtnbdbackup.0",
      }),
      buildCheckpointXml({ name: "virtnbdbackup.1", parent: "virtnbdbackup.0", disks: ["sda"] }),
    ),
    (e: unknown) => {
      assert.ok(e instanceof LibvirtError);
      assert.equal(e.code, C.VIR_ERR_CHECKPOINT_INCONSISTENT, `${e.codeName}: ${e.message}`);
      return true;
    },
  );
  assert.equal(await d.domain.blockJobInfo("sda"), null, "no job was started");
  await assert.rejects(
    d.domain.checkpointCreateXML(cpXml, C.VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE | C.VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE_VALIDATE),
    (e: unknown) => e instanceof LibvirtError && e.code === C.VIR_ERR_CHECKPOINT_INCONSISTENT,
  );
  // The original then deletes the metadata only.
  await cp.delete(C.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY);
  assert.deepEqual(await d.domain.listAllCheckpoints(), []);
});
