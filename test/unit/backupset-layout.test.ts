import { test } from "node:test";
import assert from "node:assert/strict";
import {
  checkpointOfXmlPath,
  checksumFileName,
  cptFileName,
  dataFileName,
  integrityFileName,
  isAutostartFileName,
  isCptFileName,
  isDataFileName,
  isQcowJsonFileNameOf,
  isVmconfigFileName,
  mentionsDataFile,
  parseDataFileName,
  qcowJsonFileName,
  runMarkerFileName,
  vmconfigFileName,
} from "../../src/backupset/layout.js";
import { isPartialPath, partialPath } from "../../src/storage/durable.js";

test("set file names", () => {
  assert.equal(dataFileName("sda", "full", "x"), "sda.full.data");
  assert.equal(dataFileName("sda", "inc", "virtnbdbackup.1"), "sda.inc.virtnbdbackup.1.data");
  assert.equal(dataFileName("sda", "diff", "1700000000"), "sda.diff.1700000000.data");
  assert.equal(checksumFileName("sda.full.data"), "sda.full.data.chksum");
  assert.equal(integrityFileName("sda.full.data"), "sda.full.data.integrity");
  assert.equal(cptFileName("vm1"), "vm1.cpt");
  assert.equal(runMarkerFileName("vm1"), "vm1.run.partial");
  assert.equal(partialPath("/b/sda.copy.data"), "/b/sda.copy.data.partial");
  assert.equal(vmconfigFileName("virtnbdbackup.0"), "vmconfig.virtnbdbackup.0.xml");
  assert.equal(qcowJsonFileName("sda", "virtnbdbackup.0"), "sda.virtnbdbackup.0.qcow.json");
});

test("set file name tests", () => {
  assert.ok(isDataFileName("sda.inc.virtnbdbackup.1.data"));
  assert.ok(!isDataFileName("sda.full.data.chksum"));
  assert.ok(mentionsDataFile("sda.full.data.chksum") && mentionsDataFile("sda.full.data.partial") && !mentionsDataFile("vm.cpt"));
  assert.equal(parseDataFileName("sda.copy.data")?.level, "copy");
  assert.equal(parseDataFileName("sda.full.data.partial"), null);
  assert.ok(isPartialPath("vm1.run.partial") && !isPartialPath("sda.full.data"));
  assert.ok(isCptFileName("vm1.cpt") && !isCptFileName("vm1.cpt.partial"));
  assert.ok(isVmconfigFileName("vmconfig.virtnbdbackup.0.xml") && !isVmconfigFileName("x.vmconfig.xml"));
  assert.ok(isQcowJsonFileNameOf("sda", "sda.1.qcow.json") && !isQcowJsonFileNameOf("sd", "sda.1.qcow.json"));
  assert.ok(isAutostartFileName("autostart.virtnbdbackup.0") && !isAutostartFileName("osinfo.x"));
  assert.equal(checkpointOfXmlPath("checkpoints/virtnbdbackup.2.xml"), "virtnbdbackup.2");
  assert.equal(checkpointOfXmlPath("checkpoints/.xml"), null);
  assert.equal(checkpointOfXmlPath("other/virtnbdbackup.2.xml"), null);
  assert.equal(checkpointOfXmlPath("checkpoints/a/b.xml"), null);
  assert.equal(checkpointOfXmlPath("virtnbdbackup.2.xml"), null);
});
