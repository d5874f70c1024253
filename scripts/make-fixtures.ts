/**
 * Regenerates fixtures/: small backup sets written by the original Python tool, in two versions
 * (Debian's virtnbdbackup 1.9.15 and upstream 2.47), for unit tests that read them without a
 * libvirtd (test/unit/fixtures-python-sets.test.ts).
 *
 *   node --import tsx scripts/make-fixtures.ts [--upstream=/work/upstream] [--only=python-1.9.15/plain,...]
 *
 * Needs root, a running libvirtd with qemu (TCG is enough), qemu-img, qemu-io and nbdcopy. Do not
 * run it while the integration suite runs (that restarts libvirtd before each file).
 *
 * Per version and set (plain, lz4 `-z`, zip `-o -`), on a fresh throwaway domain `vnbfix` (q35,
 * TCG, no OS) with one 4 MiB qcow2 disk (4 KiB clusters, so small writes stay small extents):
 *   1. FULL_WRITES go into the image with qemu-io while the domain is shut off; start it;
 *   2. full backup; the disk's true content is read through an NBD export of the running qemu
 *      and must hash as FULL_WRITES applied to zeros;
 *   3. INC_WRITES go to the running disk (HMP qemu-io); inc backup; truth read again and
 *      compared with FULL_WRITES + INC_WRITES; after shutdown the image itself is compared too;
 *   4. the set (without `*.log`) is copied into fixtures/<version>/<set>/; zip sets keep only the
 *      archives `0-full.zip`, `1-inc.zip` (written as the original writes them to a file on
 *      stdout, logs inside included, untouched).
 * fixtures/expected.json records, per set, each checkpoint's data file and the SHA-256 of the
 * whole virtual disk at that point.
 */
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, openSync } from "node:fs";
import { chmod, cp, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { promisify } from "node:util";
import { contentHash, seededBytes, type ContentOp } from "../test/helpers/domains.js";

const execFileP = promisify(execFile);
const KiB = 1024;
const MiB = 1024 * KiB;

const ROOT = new URL("..", import.meta.url).pathname;
const OUT = join(ROOT, "fixtures");
/** A fixed path: it shows up in the sets' vmconfig and qcow.json files. */
const WORK = "/var/tmp/vnb-fixtures";
const DOMAIN = "vnbfix";
const DISK = "sda";
const DISK_SIZE = 4 * MiB;
const CLUSTER_SIZE = 4 * KiB;

const arg = (name: string): string | undefined =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const UPSTREAM = arg("upstream") ?? "/work/upstream";
const ONLY = arg("only")?.split(",");

/** Before the full: 128 KiB. */
export const FULL_WRITES: ContentOp[] = [
  { pattern: 0x11, offset: 0, length: 48 * KiB },
  { seed: 1, offset: 1 * MiB, length: 64 * KiB },
  { pattern: 0xa5, offset: 2 * MiB + 4 * KiB, length: 12 * KiB },
  { pattern: 0xee, offset: DISK_SIZE - 4 * KiB, length: 4 * KiB },
];
/**
 * Between full and inc: 72 KiB (overwrites, zero bytes over data, a new region). The zeroes are
 * written as data (`write -P 0`), not with `write -z`: a zeroed cluster reads as a hole, and
 * upstream's inc (sparse detection; docs/behaviour.md, "Extent query") leaves dirty holes out, so its set would
 * not hold the disk's content at the inc.
 */
export const INC_WRITES: ContentOp[] = [
  { seed: 2, offset: 16 * KiB, length: 16 * KiB },
  { pattern: 0x00, offset: 1 * MiB + 32 * KiB, length: 16 * KiB },
  { pattern: 0x77, offset: 2 * MiB + 12 * KiB, length: 8 * KiB },
  { pattern: 0x5a, offset: 3 * MiB, length: 32 * KiB },
];

const PY_ENV = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: process.env["HOME"] ?? "/root", LC_ALL: "C.UTF-8" };

interface Tool {
  dir: string;
  writer: string;
  cmd: string;
  args: string[];
  env: Record<string, string>;
}

const TOOLS: Tool[] = [
  { dir: "python-1.9.15", writer: "Debian package virtnbdbackup 1.9.15 (/usr/bin/virtnbdbackup)", cmd: "/usr/bin/virtnbdbackup", args: [], env: PY_ENV },
  {
    dir: "upstream-2.47",
    writer: `upstream virtnbdbackup 2.47 (source tree, /usr/bin/python3 <tree>/virtnbdbackup)`,
    cmd: "/usr/bin/python3",
    args: [join(UPSTREAM, "virtnbdbackup")],
    env: { ...PY_ENV, PYTHONPATH: UPSTREAM },
  },
];

type SetKind = "plain" | "lz4" | "zip";
const KINDS: SetKind[] = ["plain", "lz4", "zip"];

async function run(cmd: string, args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<string> {
  try {
    const { stdout, stderr } = await execFileP(cmd, args, { maxBuffer: 64 * MiB, cwd: opts.cwd, env: opts.env });
    return stdout + stderr;
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(" ")} failed: ${[err.stderr, err.stdout].filter(Boolean).join("\n").trim() || err.message}`);
  }
}

const virsh = (...args: string[]) => run("virsh", ["-c", "qemu:///system", ...args]);

async function hmp(command: string): Promise<string> {
  const reply = await virsh("qemu-monitor-command", DOMAIN, "--hmp", command);
  if (/^(Error|error):|Could not|Cannot|failed/m.test(reply)) throw new Error(`HMP "${command}": ${reply.trim()}`);
  return reply;
}

async function removeDomain(): Promise<void> {
  await virsh("destroy", DOMAIN).catch(() => "");
  await virsh("undefine", DOMAIN, "--checkpoints-metadata", "--snapshots-metadata").catch(() => "");
}

function domainXml(image: string): string {
  return `<domain type='qemu'>
  <name>${DOMAIN}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='${image}'/>
      <target dev='${DISK}' bus='sata'/>
    </disk>
    <memballoon model='none'/>
  </devices>
</domain>
`;
}

let randomFiles = 0;
/** A qemu-io command for one write; seeded random bytes go through a file qemu can read. */
async function qemuIoCommand(dir: string, op: ContentOp): Promise<string> {
  if ("pattern" in op) return `write -P 0x${op.pattern.toString(16)} ${op.offset} ${op.length}`;
  if ("zero" in op) return `write -z ${op.offset} ${op.length}`;
  const file = join(dir, `random-${randomFiles++}.bin`);
  await writeFile(file, seededBytes(op.seed, op.length), { mode: 0o644 });
  return `write -s ${file} ${op.offset} ${op.length}`;
}

/** qemu node name and qdev id of the running domain's disk. */
async function blockNode(): Promise<{ node: string; qdev: string }> {
  const xml = await virsh("dumpxml", DOMAIN);
  const disk = [...xml.matchAll(/<disk [\s\S]*?<\/disk>/g)].map((m) => m[0]).find((d) => d.includes(`dev='${DISK}'`));
  const qdev = disk && /<alias name='([^']+)'/.exec(disk)?.[1];
  if (!qdev) throw new Error(`no alias for disk ${DISK} in the live XML`);
  let node: string | null = null;
  let current: string | null = null;
  for (const line of (await hmp("info block")).split(/\r?\n/)) {
    const head = /^(\S+)(?: \([^)]*\))?: /.exec(line);
    if (head) current = head[1]!;
    const att = /^\s+Attached to:\s+(\S+)/.exec(line);
    if (att && att[1] === qdev) node = current;
  }
  if (!node) throw new Error(`no block node attached to ${qdev}`);
  return { node, qdev };
}

function sha256OfCommand(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    const hash = createHash("sha256");
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => hash.update(c));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(hash.digest("hex")) : reject(new Error(`${cmd} ${args.join(" ")} failed (${code}): ${stderr.trim()}`))));
  });
}

/** SHA-256 of the running disk's whole virtual content, read through a private NBD export. */
async function liveDiskHash(dir: string): Promise<string> {
  const { node } = await blockNode();
  const sockDir = join(dir, "nbd");
  await mkdir(sockDir, { recursive: true });
  await chmod(sockDir, 0o777);
  const sock = join(sockDir, "truth.sock");
  await hmp(`nbd_server_start unix:${sock}`);
  try {
    await hmp(`nbd_server_add ${node} ${DISK}`);
    return await sha256OfCommand("nbdcopy", [`nbd+unix:///${DISK}?socket=${sock}`, "-"]);
  } finally {
    await virsh("qemu-monitor-command", DOMAIN, "--hmp", "nbd_server_stop").catch(() => "");
    await rm(sock, { force: true });
  }
}

async function backup(tool: Tool, kind: SetKind, level: "full" | "inc", dir: string, workDir: string): Promise<void> {
  const args = [...tool.args, "-d", DOMAIN, "-l", level, "-n"];
  if (kind === "lz4") args.push("-z");
  if (kind !== "zip") {
    await run(tool.cmd, [...args, "-o", dir], { env: tool.env, cwd: workDir });
    return;
  }
  // `-o -`: the archive on stdout, side files (cpt, checkpoints/) in the working directory.
  const cwd = join(workDir, "zip-cwd");
  await mkdir(cwd, { recursive: true });
  const fd = openSync(join(dir, level === "full" ? "0-full.zip" : "1-inc.zip"), "w");
  try {
    const child = spawn(tool.cmd, [...args, "-o", "-"], { cwd, env: tool.env, stdio: ["ignore", fd, "pipe"] });
    let stderr = "";
    child.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((r) => child.once("close", r));
    if (code !== 0) throw new Error(`${tool.cmd} ${args.join(" ")} -o - failed (${code}):\n${stderr}`);
  } finally {
    closeSync(fd);
  }
}

interface CheckpointRecord {
  checkpoint: string;
  level: "full" | "inc";
  /** Path of the `-f` item relative to the set: the data file, or the zip archive. */
  file: string;
  /** The stream's name (the file's, or its zip entry's). */
  entry: string;
  /** The writes since the previous checkpoint (onto zeros for the full). */
  writes: ContentOp[];
  /** SHA-256 of the whole virtual disk at this checkpoint. */
  sha256: string;
}

interface SetRecord {
  path: string;
  writer: string;
  version: string;
  compressed: boolean;
  zip: boolean;
  domain: string;
  disk: string;
  virtualSize: number;
  clusterSize: number;
  checkpoints: CheckpointRecord[];
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(relative(dir, join(e.parentPath, e.name)));
  }
  return out.sort();
}

async function makeSet(tool: Tool, kind: SetKind, version: string): Promise<SetRecord> {
  const path = `${tool.dir}/${kind}`;
  const workDir = join(WORK, `${tool.dir}-${kind}`);
  await removeDomain();
  await rm(workDir, { recursive: true, force: true });
  await mkdir(workDir, { recursive: true });
  await chmod(workDir, 0o755);
  const image = join(workDir, `${DISK}.qcow2`);
  await run("qemu-img", ["create", "-q", "-f", "qcow2", "-o", `cluster_size=${CLUSTER_SIZE}`, image, String(DISK_SIZE)]);
  const io: string[] = [];
  for (const op of FULL_WRITES) io.push("-c", await qemuIoCommand(workDir, op));
  await run("qemu-io", ["-f", "qcow2", ...io, image]);
  const setDir = join(workDir, "set");
  await mkdir(setDir);
  const xmlFile = join(workDir, "domain.xml");
  await writeFile(xmlFile, domainXml(image));
  await virsh("define", xmlFile);
  try {
    await virsh("start", DOMAIN);
    await backup(tool, kind, "full", setDir, workDir);
    const truth0 = await liveDiskHash(workDir);
    const want0 = contentHash(DISK_SIZE, FULL_WRITES);
    if (truth0 !== want0) throw new Error(`${path}: disk content after the full is ${truth0}, the writes give ${want0}`);

    const { qdev } = await blockNode();
    for (const op of INC_WRITES) await hmp(`qemu-io -d ${qdev} "${await qemuIoCommand(workDir, op)}"`);
    await backup(tool, kind, "inc", setDir, workDir);
    const truth1 = await liveDiskHash(workDir);
    const want1 = contentHash(DISK_SIZE, [...FULL_WRITES, ...INC_WRITES]);
    if (truth1 !== want1) throw new Error(`${path}: disk content after the inc is ${truth1}, the writes give ${want1}`);
    await virsh("destroy", DOMAIN);
    const offline = await sha256OfCommand("nbdcopy", ["--", "[", "qemu-nbd", "-r", "-f", "qcow2", image, "]", "-"]);
    if (offline !== want1) throw new Error(`${path}: the image after shutdown hashes ${offline}, expected ${want1}`);

    const target = join(OUT, path);
    await rm(target, { recursive: true, force: true });
    await mkdir(target, { recursive: true });
    const files = (await listFiles(setDir)).filter((f) => !f.endsWith(".log") && !f.endsWith(".partial"));
    for (const f of files) await cp(join(setDir, f), join(target, f), { preserveTimestamps: true });
    const zip = kind === "zip";
    const inc = `${DISK}.inc.virtnbdbackup.1.data`;
    for (const want of zip ? ["0-full.zip", "1-inc.zip"] : [`${DISK}.full.data`, inc]) {
      if (!files.includes(want)) throw new Error(`${path}: the tool wrote no ${want} (files: ${files.join(", ")})`);
    }
    return {
      path,
      writer: tool.writer,
      version,
      compressed: kind === "lz4",
      zip,
      domain: DOMAIN,
      disk: DISK,
      virtualSize: DISK_SIZE,
      clusterSize: CLUSTER_SIZE,
      checkpoints: [
        { checkpoint: "virtnbdbackup.0", level: "full", file: zip ? "0-full.zip" : `${DISK}.full.data`, entry: `${DISK}.full.data`, writes: FULL_WRITES, sha256: want0 },
        { checkpoint: "virtnbdbackup.1", level: "inc", file: zip ? "1-inc.zip" : inc, entry: inc, writes: INC_WRITES, sha256: want1 },
      ],
    };
  } finally {
    await removeDomain();
    await rm(workDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const expectedFile = join(OUT, "expected.json");
  const previous = await readFile(expectedFile, "utf8").then((t) => (JSON.parse(t) as { sets: SetRecord[] }).sets).catch(() => [] as SetRecord[]);
  const sets = new Map(previous.map((s) => [s.path, s]));
  const failures: string[] = [];
  for (const tool of TOOLS) {
    const version = (await run(tool.cmd, [...tool.args, "--version"], { env: tool.env })).trim();
    for (const kind of KINDS) {
      const path = `${tool.dir}/${kind}`;
      if (ONLY && !ONLY.includes(path)) continue;
      process.stderr.write(`${path} (${version}) ... `);
      try {
        sets.set(path, await makeSet(tool, kind, version));
        process.stderr.write("ok\n");
      } catch (e) {
        process.stderr.write("FAILED\n");
        failures.push(`${path}: ${(e as Error).message}`);
      }
    }
  }
  const ordered = [...sets.values()].sort((a, b) => (a.path < b.path ? -1 : 1));
  await writeFile(expectedFile, JSON.stringify({ generator: "scripts/make-fixtures.ts", sets: ordered }, null, 2) + "\n");
  await rm(WORK, { recursive: true, force: true });
  if (failures.length > 0) {
    process.stderr.write(`\n${failures.join("\n\n")}\n`);
    process.exit(1);
  }
}

await main();
