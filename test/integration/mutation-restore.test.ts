/**
 * Mutation suite: one full → inc → inc set made by our virtnbdbackup on a real domain
 * (uncompressed, and lz4), then for each mutation a copy of the set (cp -a) is damaged and
 * restored with both engines (qemu-img convert from our chain server, the default; NBD writes
 * through qemu-nbd) and verified (`-o verify`).
 *
 * Every restore must end in exit 1 with exactly one ERROR line naming the problem and no image
 * left, or exit 0 with a bit-exact image — never exit 0 with a wrong image. Verify must flag
 * (exit 1) every mutation that damages data or the chain. The counts (exit 1 / bit-exact /
 * wrong, verify flagged) are printed as diagnostics.
 *
 * Mutations: truncation at several points, payload byte flips (full, middle, newest), frame
 * header changes (an offset digit, a length digit, the kind, the stop frame, the meta header),
 * metadata changes (checkpoint name, parent, dataSize), the lz4 trailer, deleted middle /
 * newest / full file, a deleted newest inc with a `.cpt` edited to match (the `checkpoints/`
 * XMLs still name it) or deleted, swapped and equal mtimes, swapped file names, garbage / extra /
 * empty / missing `.cpt`, deleted / garbage / foreign `.integrity`, wrong / garbage / missing
 * `.chksum` (alone and with a payload or header change), a duplicate inc, an inc replaced by
 * another, missing vmconfig.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { cp, open, readdir, readFile, rename, rm, stat, truncate, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { StreamReader } from "../../src/format/reader.js";
import type { DataFrame } from "../../src/format/reader.js";
import { DirectorySource } from "../../src/storage/directory-source.js";
import { testDomain, MiB } from "../helpers/domains.js";
import { assertOk, captureTruth, imageHash, logLines, ourBackup, ourRestore, type ToolResult } from "../helpers/our-tool.js";
import { tempDir } from "../helpers/tmp.js";

const F = "sda.full.data";
const X = "sda.inc.virtnbdbackup.1.data";
const Y = "sda.inc.virtnbdbackup.2.data";

/** Where things are in a stream file: header positions of the data frames, zero frames, stop. */
interface Layout {
  size: number;
  metaLength: number;
  data: { header: number; payload: number; payloadBytes: number; start: number; length: number }[];
  zeros: number[];
  stop: number;
  trailer: number | null;
}

async function layout(dir: string, name: string): Promise<Layout> {
  const source = await new DirectorySource(dir).open(name);
  try {
    const reader = await StreamReader.open(source);
    const data: Layout["data"] = [];
    const zeros: number[] = [];
    let pos = 40 + reader.metaBytes.length + 2;
    for await (const f of reader.frames()) {
      if (f.kind === "data") {
        const d = f as DataFrame;
        data.push({ header: d.payload - 40, payload: d.payload, payloadBytes: d.payloadBytes, start: d.start, length: d.length });
        pos = d.payload + d.payloadBytes + 2;
      } else {
        zeros.push(pos);
        pos += 40;
      }
    }
    return { size: source.size, metaLength: reader.metaBytes.length, data, zeros, stop: pos, trailer: reader.compressed ? pos + 40 : null };
  } finally {
    await source.close();
  }
}

async function patch(path: string, at: number, edit: (b: Buffer) => void, length = 1): Promise<void> {
  const fh = await open(path, "r+");
  try {
    const buf = Buffer.alloc(length);
    await fh.read(buf, 0, length, at);
    edit(buf);
    await fh.write(buf, 0, length, at);
  } finally {
    await fh.close();
  }
}

const flip = (path: string, at: number) => patch(path, at, (b) => (b[0] = b[0]! ^ 0x5a));
/** Replaces `from` by `to` (same length) in the first 4 KiB (the meta JSON). */
async function editMeta(path: string, from: string, to: string): Promise<void> {
  assert.equal(from.length, to.length);
  const head = Buffer.alloc(4096);
  const fh = await open(path, "r+");
  try {
    const { bytesRead } = await fh.read(head, 0, 4096, 0);
    const at = head.subarray(0, bytesRead).indexOf(from, 0, "latin1");
    assert.ok(at >= 0, `${from} in the metadata of ${path}`);
    await fh.write(Buffer.from(to, "latin1"), 0, to.length, at);
  } finally {
    await fh.close();
  }
}

/** Changes one hex digit of a header field (start: chars 5–20, length: 22–37) by +1 (mod 16). */
async function headerDigit(path: string, header: number, field: "start" | "length", digit: number): Promise<void> {
  const at = header + (field === "start" ? 5 : 22) + digit;
  await patch(path, at, (b) => {
    const v = parseInt(String.fromCharCode(b[0]!), 16);
    b[0] = "0123456789abcdef".charCodeAt((v + 1) % 16);
  });
}

async function setMtime(path: string, seconds: number): Promise<void> {
  await utimes(path, seconds, seconds);
}

async function mtimeOf(path: string): Promise<number> {
  return (await stat(path)).mtimeMs / 1000;
}

interface Mutation {
  name: string;
  /** Damages data or the chain: verify must flag it. */
  matters: boolean;
  /** Only for the compressed set / only for the uncompressed set. */
  only?: "lz4" | "plain";
  apply(dir: string, l: Record<string, Layout>): Promise<void>;
}

const MUTATIONS: Mutation[] = [
  // Truncation.
  { name: "full truncated to half", matters: true, apply: async (d, l) => truncate(join(d, F), Math.floor(l[F]!.size / 2)) },
  { name: "middle inc truncated to half", matters: true, apply: async (d, l) => truncate(join(d, X), Math.floor(l[X]!.size / 2)) },
  { name: "newest inc 1 byte short", matters: true, apply: async (d, l) => truncate(join(d, Y), l[Y]!.size - 1) },
  { name: "newest inc cut inside its first data payload", matters: true, apply: async (d, l) => truncate(join(d, Y), l[Y]!.data[0]!.payload + 100) },
  { name: "middle inc cut after its meta frame", matters: true, apply: async (d, l) => truncate(join(d, X), 40 + l[X]!.metaLength + 2) },
  { name: "full truncated to 0 bytes", matters: true, apply: async (d) => truncate(join(d, F), 0) },
  // Payload bytes.
  { name: "payload byte flipped in the full", matters: true, apply: async (d, l) => flip(join(d, F), l[F]!.data[0]!.payload + Math.floor(l[F]!.data[0]!.payloadBytes / 2)) },
  { name: "payload byte flipped in the middle inc", matters: true, apply: async (d, l) => flip(join(d, X), l[X]!.data[0]!.payload + 7) },
  { name: "last payload byte flipped in the newest inc", matters: true, apply: async (d, l) => { const f = l[Y]!.data.at(-1)!; await flip(join(d, Y), f.payload + f.payloadBytes - 1); } },
  // Frame headers.
  { name: "middle inc: data frame offset digit changed (+64 KiB)", matters: true, apply: async (d, l) => headerDigit(join(d, X), l[X]!.data[0]!.header, "start", 11) },
  { name: "middle inc: data frame offset digit changed (+4 KiB)", matters: true, apply: async (d, l) => headerDigit(join(d, X), l[X]!.data[0]!.header, "start", 12) },
  { name: "middle inc: data frame length digit changed", matters: true, apply: async (d, l) => headerDigit(join(d, X), l[X]!.data[0]!.header, "length", 12) },
  { name: "middle inc: data frame kind data→zero", matters: true, apply: async (d, l) => patch(join(d, X), l[X]!.data[0]!.header, (b) => b.write("zero", "latin1"), 4) },
  { name: "full: zero frame kind zero→data", matters: true, apply: async (d, l) => patch(join(d, F), l[F]!.zeros[0]!, (b) => b.write("data", "latin1"), 4) },
  { name: "full: zero frame offset digit changed", matters: true, apply: async (d, l) => headerDigit(join(d, F), l[F]!.zeros.at(-1)!, "start", 12) },
  { name: "newest inc: stop frame damaged", matters: true, apply: async (d, l) => patch(join(d, Y), l[Y]!.stop + 1, (b) => (b[0] = 0x69)) },
  { name: "middle inc: meta header length digit changed", matters: true, apply: async (d) => headerDigit(join(d, X), 0, "length", 15) },
  // Metadata.
  { name: "middle inc: checkpointName changed", matters: true, apply: async (d) => editMeta(join(d, X), '"checkpointName": "virtnbdbackup.1"', '"checkpointName": "virtnbdbackup.7"') },
  { name: "middle inc: parentCheckpoint changed", matters: true, apply: async (d) => editMeta(join(d, X), '"parentCheckpoint": "virtnbdbackup.0"', '"parentCheckpoint": "virtnbdbackup.2"') },
  { name: "middle inc: dataSize digit changed", matters: true, apply: async (d) => patch(join(d, X), (await readFile(join(d, X))).subarray(0, 4096).indexOf('"dataSize": ') + 13, (b) => (b[0] = b[0] === 0x39 ? 0x38 : b[0]! + 1)) },
  { name: "newest inc: lz4 trailer digit changed", matters: true, only: "lz4", apply: async (d, l) => { const at = (await readFile(join(d, Y))).indexOf("[", l[Y]!.trailer! - 1); await patch(join(d, Y), at + 1, (b) => (b[0] = b[0] === 0x39 ? 0x31 : b[0]! + 1)); } },
  // Deleted files.
  { name: "middle inc deleted", matters: true, apply: async (d) => rm(join(d, X)) },
  { name: "newest inc deleted", matters: true, apply: async (d) => rm(join(d, Y)) },
  { name: "full deleted", matters: true, apply: async (d) => rm(join(d, F)) },
  { name: "newest inc deleted, .cpt edited to match", matters: true, apply: async (d) => { await rm(join(d, Y)); await writeFile(join(d, await cptName(d)), '["virtnbdbackup.0", "virtnbdbackup.1"]'); } },
  { name: "newest inc and .cpt deleted", matters: true, apply: async (d) => { await rm(join(d, Y)); await rm(join(d, await cptName(d))); } },
  // Order.
  { name: "mtimes of the incs swapped", matters: false, apply: async (d) => { const [a, b] = [await mtimeOf(join(d, X)), await mtimeOf(join(d, Y))]; await setMtime(join(d, X), b); await setMtime(join(d, Y), a); } },
  { name: "full is the newest file", matters: false, apply: async (d) => { const t = await mtimeOf(join(d, Y)); await setMtime(join(d, F), t + 60); } },
  { name: "all files the same mtime", matters: false, apply: async (d) => { for (const n of await readdir(d)) await setMtime(join(d, n), 1_700_000_000); } },
  { name: "names of the incs swapped (with side files)", matters: false, apply: async (d) => { for (const s of ["", ".chksum", ".integrity"]) { await rename(join(d, X + s), join(d, "tmp" + s)); await rename(join(d, Y + s), join(d, X + s)); await rename(join(d, "tmp" + s), join(d, Y + s)); } } },
  // .cpt
  { name: "garbage .cpt", matters: true, apply: async (d) => writeFile(join(d, await cptName(d)), Buffer.from([0x7b, 0x00, 0xff, 0x22, 0x5b])) },
  { name: ".cpt names one checkpoint more", matters: true, apply: async (d) => writeFile(join(d, await cptName(d)), '["virtnbdbackup.0", "virtnbdbackup.1", "virtnbdbackup.2", "virtnbdbackup.3"]') },
  { name: ".cpt is an empty list", matters: false, apply: async (d) => writeFile(join(d, await cptName(d)), "[]") },
  { name: ".cpt deleted", matters: false, apply: async (d) => rm(join(d, await cptName(d))) },
  // .integrity
  { name: "middle inc .integrity deleted", matters: false, apply: async (d) => rm(join(d, X + ".integrity")) },
  { name: "middle inc .integrity garbage", matters: true, apply: async (d) => writeFile(join(d, X + ".integrity"), "virtnbd-integrity 1\nmeta 0\nend 1 0\n") },
  { name: "middle inc .integrity of the newest inc", matters: true, apply: async (d) => cp(join(d, Y + ".integrity"), join(d, X + ".integrity")) },
  { name: "middle inc .integrity deleted + payload byte flipped", matters: true, apply: async (d, l) => { await rm(join(d, X + ".integrity")); await flip(join(d, X), l[X]!.data[0]!.payload + 11); } },
  // .chksum
  { name: "middle inc .chksum wrong value", matters: true, apply: async (d) => writeFile(join(d, X + ".chksum"), "12345") },
  { name: "middle inc .chksum garbage", matters: true, apply: async (d) => writeFile(join(d, X + ".chksum"), "None") },
  { name: "middle inc .chksum deleted", matters: false, apply: async (d) => rm(join(d, X + ".chksum")) },
  { name: "middle inc .chksum deleted + payload byte flipped", matters: true, apply: async (d, l) => { await rm(join(d, X + ".chksum")); await flip(join(d, X), l[X]!.data[0]!.payload + 13); } },
  { name: "middle inc .chksum deleted + offset digit changed", matters: true, apply: async (d, l) => { await rm(join(d, X + ".chksum")); await headerDigit(join(d, X), l[X]!.data[0]!.header, "start", 12); } },
  { name: "full .chksum and .integrity deleted + payload byte flipped (lz4 checks its frames)", matters: true, only: "lz4", apply: async (d, l) => { await rm(join(d, F + ".chksum")); await rm(join(d, F + ".integrity")); await flip(join(d, F), l[F]!.data[0]!.payload + 100); } },
  // Other.
  { name: "duplicate of the middle inc under another name", matters: true, apply: async (d) => { await cp(join(d, X), join(d, "sda.inc.virtnbdbackup.1x.data"), { preserveTimestamps: true }); } },
  { name: "newest inc replaced by the middle one (with side files)", matters: true, apply: async (d) => { for (const s of ["", ".chksum", ".integrity"]) await cp(join(d, X + s), join(d, Y + s)); } },
  { name: "vmconfig files deleted", matters: false, apply: async (d) => { for (const n of await readdir(d)) if (n.startsWith("vmconfig")) await rm(join(d, n)); } },
];

async function cptName(dir: string): Promise<string> {
  return (await readdir(dir)).find((n) => n.endsWith(".cpt"))!;
}

type Outcome = "exit 1" | "bit-exact" | "WRONG";

for (const mode of ["plain", "lz4"] as const) {
  test(`mutation suite (${mode}): every damaged full+inc+inc set restores bit-exact or fails with one ERROR line; verify flags every damage`, async (t) => {
    const d = await testDomain(t, { disks: [{ size: 32 * MiB, content: [{ seed: 91, offset: 0, length: 12 * MiB }, { pattern: 0x5c, offset: 20 * MiB, length: MiB }] }], start: true });
    const work = await tempDir(t, `vnbt-mut-${mode}-`);
    const set = join(work, "set");
    const z = mode === "lz4" ? ["-z"] : [];
    assertOk(await ourBackup(["-d", d.name, "-l", "full", "-o", set, "-n", ...z]), "full");
    await d.writeRandom("sda", 2 * MiB, 3 * MiB, 92);
    assertOk(await ourBackup(["-d", d.name, "-l", "inc", "-o", set, "-n", ...z]), "inc 1");
    await d.writeRandom("sda", 16 * MiB, 2 * MiB, 93);
    await d.writePattern("sda", 2 * MiB + 4096, 8192, 0x77);
    assertOk(await ourBackup(["-d", d.name, "-l", "inc", "-o", set, "-n", ...z]), "inc 2");
    const truth = (await captureTruth(d))["sda"]!;
    await d.destroy();
    const layouts: Record<string, Layout> = {};
    for (const n of [F, X, Y]) layouts[n] = await layout(set, n);
    assert.ok(layouts[X]!.data.length > 0 && layouts[F]!.zeros.length > 0);

    const rows: string[] = [];
    const counts = { "exit 1": 0, "bit-exact": 0, WRONG: 0 };
    const problems: string[] = [];
    let n = 0;
    for (const m of MUTATIONS.filter((x) => !x.only || x.only === mode)) {
      const dir = join(work, `m${n}`);
      await cp(set, dir, { recursive: true, preserveTimestamps: true });
      await m.apply(dir, layouts);
      const outcomes: string[] = [];
      for (const engine of ["convert", "nbd-writes"] as const) {
        const out = join(work, `o${n}-${engine}`);
        const r: ToolResult = await ourRestore(["-i", dir, "-o", out, "-n"], { env: { ...process.env, VIRTNBD_RESTORE_ENGINE: engine } });
        let outcome: Outcome;
        if (r.exitCode === 0) {
          outcome = (await imageHash(join(out, "sda.qcow2"), "qcow2")) === truth ? "bit-exact" : "WRONG";
          if (outcome === "WRONG") problems.push(`${m.name} (${engine}): exit 0 with a WRONG image`);
        } else {
          outcome = "exit 1";
          const errors = logLines(r, "ERROR");
          if (r.exitCode !== 1) problems.push(`${m.name} (${engine}): exit ${r.exitCode}`);
          if (errors.length !== 1) problems.push(`${m.name} (${engine}): ${errors.length} ERROR lines:\n${r.stderr}`);
          else if (!/\bsda\b|virtnbdbackup\.\d|\.cpt|config/.test(errors[0]!)) problems.push(`${m.name} (${engine}): the ERROR line names nothing: ${errors[0]}`);
          if (/\n\s+at .*:\d+:\d+\)?$/m.test(r.stderr)) problems.push(`${m.name} (${engine}): stack trace on stderr`);
          const left = (await readdir(out).catch(() => [] as string[])).filter((f) => /qcow2/.test(f));
          if (left.length) problems.push(`${m.name} (${engine}): image left after exit 1: ${left.join(" ")}`);
        }
        counts[outcome]++;
        outcomes.push(`${engine}: ${outcome}${outcome === "exit 1" ? ` (${(logLines(r, "ERROR")[0] ?? "").replace(/^.*ERROR [^:]*: /, "").slice(0, 160)})` : ""}`);
        await rm(out, { recursive: true, force: true });
      }
      const v = await ourRestore(["-i", dir, "-o", "verify", "-n"]);
      const flagged = v.exitCode !== 0;
      if (m.matters && !flagged) problems.push(`${m.name}: verify passed (exit ${v.exitCode}):\n${v.stderr.slice(-1500)}`);
      rows.push(`${m.name}: ${outcomes.join("; ")}; verify ${flagged ? "flags it" : "passes"}`);
      await rm(dir, { recursive: true, force: true });
      n++;
    }
    for (const r of rows) t.diagnostic(r);
    t.diagnostic(`${mode}: ${n} mutations, ${n * 2} restores: ${counts["exit 1"]} exit 1, ${counts["bit-exact"]} bit-exact, ${counts.WRONG} wrong`);
    assert.deepEqual(problems, []);
  });
}
