/**
 * redefineMissing: libvirt's checkpoint names in one call, each saved file's name from its
 * first lines (a full parse only for unusual XML), a redefinition only for what libvirt lost.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFile, utimes } from "node:fs/promises";
import { join } from "node:path";
import { redefineMissing, savedCheckpointName, CheckpointError } from "../../src/backup/checkpoints.js";
import type { Domain } from "../../src/libvirt/domain.js";
import { tempDir } from "../helpers/tmp.js";

const xmlOf = (name: string, parent?: string) =>
  `<domaincheckpoint>\n  <name>${name}</name>\n${parent ? `  <parent>\n    <name>${parent}</name>\n  </parent>\n` : ""}  <creationTime>1764900000</creationTime>\n  <disks>\n    <disk name='sda' checkpoint='bitmap' bitmap='${name}'/>\n  </disks>\n  <domain type='kvm'>\n    <name>vm</name>\n  </domain>\n</domaincheckpoint>\n`;

test("savedCheckpointName: the leading <name> of libvirt's XML; other XML parsed; no name is an error", () => {
  assert.equal(savedCheckpointName(xmlOf("virtnbdbackup.7", "virtnbdbackup.6"), "f"), "virtnbdbackup.7");
  assert.equal(savedCheckpointName(`<?xml version="1.0"?>\n<domaincheckpoint><name>a</name></domaincheckpoint>`, "f"), "a");
  assert.equal(savedCheckpointName(`<domaincheckpoint>\n<!-- c -->\n<name>b&amp;c</name><domain><name>vm</name></domain></domaincheckpoint>`, "f"), "b&c");
  assert.equal(savedCheckpointName(`<domaincheckpoint><description>x</description><name>late</name></domaincheckpoint>`, "f"), "late");
  assert.throws(() => savedCheckpointName(`<domaincheckpoint><domain><name>vm</name></domain></domaincheckpoint>`, "/set/checkpoints/x.xml"), (e: Error) => e instanceof CheckpointError && /x\.xml.*no <name>/.test(e.message));
});

test("redefineMissing: one listing of libvirt's checkpoints, only the lost ones redefined, oldest first", async (t) => {
  const dir = await tempDir(t);
  const names = Array.from({ length: 40 }, (_, i) => `virtnbdbackup.${i}`);
  for (const [i, n] of names.entries()) {
    const file = join(dir, `${n}.xml`);
    await writeFile(file, xmlOf(n, i > 0 ? names[i - 1] : undefined));
    await utimes(file, 1_700_000_000 + i, 1_700_000_000 + i);
  }
  const known = new Set(names.slice(0, 37)); // libvirt lost the last three
  const calls: string[] = [];
  const domain = {
    async listAllCheckpoints() {
      calls.push("list");
      return [...known].map((name) => ({ name, free() {} }));
    },
    async checkpointLookupByName(name: string) {
      calls.push(`lookup ${name}`);
      throw new Error("not expected");
    },
    async checkpointCreateXML(xml: string) {
      const name = /<name>([^<]+)<\/name>/.exec(xml)![1]!;
      calls.push(`redefine ${name}`);
      known.add(name);
      return { free() {} };
    },
  } as unknown as Domain;
  const lines: string[] = [];
  await redefineMissing(domain, dir, { info: (m: string) => lines.push(m), warning: () => {}, error: () => {} } as never);
  assert.deepEqual(calls, ["list", "redefine virtnbdbackup.37", "redefine virtnbdbackup.38", "redefine virtnbdbackup.39"]);
  assert.ok(lines.includes(`Loaded checkpoint list from: [${dir}]`));
});

test("redefineMissing: a file named after a checkpoint libvirt knows is not read; a file of another name is", async (t) => {
  const dir = await tempDir(t);
  // Unreadable as a checkpoint: reading it would be an error (no <name>).
  await writeFile(join(dir, "virtnbdbackup.0.xml"), "<domaincheckpoint><domain><name>vm</name></domain></domaincheckpoint>");
  await writeFile(join(dir, "copied-by-hand.xml"), xmlOf("virtnbdbackup.1", "virtnbdbackup.0"));
  const redefined: string[] = [];
  const domain = {
    listAllCheckpoints: async () => [{ name: "virtnbdbackup.0", free() {} }],
    checkpointCreateXML: async (xml: string) => {
      redefined.push(/<name>([^<]+)<\/name>/.exec(xml)![1]!);
      return { free() {} };
    },
  } as unknown as Domain;
  await redefineMissing(domain, dir, { info: () => {}, warning: () => {}, error: () => {} } as never);
  assert.deepEqual(redefined, ["virtnbdbackup.1"]);
});
