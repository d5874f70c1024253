/**
 * Throwaway libvirt test domains for integration tests (real libvirtd, TCG, no guest OS).
 *
 * API
 * ---
 *   const d = await testDomain(t, { disks: [{}, { size: 32 * MiB }], start: true });
 *     Creates (and with `start` boots) a domain and registers cleanup with `t.after`, so it is
 *     destroyed, undefined (checkpoint/snapshot metadata, nvram) and its files deleted even when
 *     the test fails. `withDomain(t, opts, async (d) => …)` does the same around a callback and
 *     cleans up as soon as the callback settles. `createTestDomain(opts)` leaves cleanup to you
 *     (`await d.cleanup()`).
 *
 *   Options (TestDomainOptions): `disks` (DiskSpec[], default one 64 MiB qcow2 with
 *   defaultContent(0)), `cdrom` (attach an empty SATA cdrom after the disks), `machine`
 *   ("q35" default, or "pc"), `start`, `guestAgentChannel` (add the qemu-ga virtio channel;
 *   no agent ever answers), `scsiController` (a virtio-scsi controller, so sd* disks can be
 *   hot-plugged and unplugged), `uri` (default $VNBT_LIBVIRT_URI or qemu:///system),
 *   `connection` (reuse one; otherwise the domain owns a connection and closes it).
 *   A real guest (test/helpers/linux-guest.ts builds one): `boot` ({ kernel, initrd, cmdline }:
 *   direct kernel boot), `serialConsole` (serial port 0 on a unix socket `consoleSocket`, all
 *   its output logged to `consoleLog`), `acpi` (lets the guest power itself off), `memoryMiB`
 *   (default 64).
 *   DiskSpec: `size` (bytes, default 64 MiB), `format` ("qcow2" default | "raw"), `content`
 *   (ContentOp[], default defaultContent(index)), `bus` ("sata" default: sda, sdb, …;
 *   "virtio": vda, vdb, …), `makeImage(path, format, size)` (makes the image instead of
 *   qemu-img create + content; its content is unknown to the helpers: `expectedHash` throws).
 *   ContentOp: `{ pattern, offset, length }` (qemu-io write -P), `{ seed, offset, length }`
 *   (seeded random bytes), `{ zero: true, offset, length }` (write-zeroes). Everything else
 *   stays a hole.
 *
 *   TestDomain: `name` ("vnbt-<pid>-<random>"), `dir` (temp dir with the images),
 *   `connection`, `domain` (our binding's Domain), `disks` (TestDisk: target sda/sdb/…,
 *   path, format, size, spec), `consoleSocket`, `consoleLog`, `start(flags?)`, `destroy()`,
 *   `isRunning()`,
 *   `hmp(cmd)`, `blockNode(target)` (qemu node name + qdev of a running disk, from query-block),
 *   `writePattern(target, offset, length, byte)` / `writeRandom(target, offset, length, seed)`
 *   / `writeZeroes(target, offset, length)`: through HMP `qemu-io -d <qdev>` while running,
 *   through qemu-io on the image while shut off (spec content is updated either way, so
 *   `expectedHash(target)` follows), `diskHash(target)` / `diskHashes()`: sha256 of the full
 *   virtual disk content, read through an NBD export of the running qemu (HMP nbd_server_start
 *   on a private socket; fails while a backup job's NBD server runs) or from the shut-off image
 *   (qemu-nbd + nbdcopy), `expectedHash(target)`: sha256 computed from the spec, `cleanup()`.
 *
 *   Drift (what changes under a backup chain): `attachDisk(target, size)` (a new empty qcow2,
 *   vd* virtio / sd* scsi, live + persistent or in the definition; joins `disks`),
 *   `detachDisk(target)` (live only for scsi: a PCI unplug waits for a guest), `blockResize(target,
 *   size)` (grow; virsh blockresize or qemu-img resize), `crashQemuNbdOn(target)` (shut off:
 *   qemu-nbd opens the image read-write and is SIGKILLed, its bitmaps stay "in-use"),
 *   `redefine()` (undefine with checkpoint metadata, define the same XML again).
 *
 *   Helpers: `seededBytes(seed, length)` (deterministic bytes), `contentHash(size, ops)`,
 *   `defaultContent(i)`, `sweepStaleTestDomains({ all? })` (removes vnbt- domains and temp dirs
 *   left by dead test processes; runs once per process before the first domain is created),
 *   `TEST_DOMAIN_PREFIX`, `MiB`.
 */
import { execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmod, copyFile, mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { Connection } from "../../src/libvirt/connection.js";
import * as C from "../../src/libvirt/constants.js";
import type { Domain } from "../../src/libvirt/domain.js";
import { listBlockBitmaps } from "../../src/libvirt/block-bitmaps.js";
import { DomainXml } from "../../src/libvirt/domain-xml.js";
import { isLibvirtError } from "../../src/libvirt/errors.js";
import { pidAlive } from "./process.js";

/** Debian's OVMF firmware (package ovmf), for UEFI test domains. */
export const OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd";
export const OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd";

const execFileP = promisify(execFile);

export const MiB = 1024 * 1024;
export const TEST_DOMAIN_PREFIX = "vnbt-";
const DIR_PREFIX = "vnbt-dom-";
const DEFAULT_URI = process.env["VNBT_LIBVIRT_URI"] ?? "qemu:///system";

export type ContentOp =
  | { pattern: number; offset: number; length: number }
  | { seed: number; offset: number; length: number }
  | { zero: true; offset: number; length: number };

export interface DiskSpec {
  size?: number;
  format?: "qcow2" | "raw";
  content?: ContentOp[];
  bus?: "sata" | "virtio";
  /** Makes the image at `path` (a `size`-byte `format` image) instead of the spec content. */
  makeImage?: (path: string, format: "qcow2" | "raw", size: number) => Promise<void>;
}

/** Direct kernel boot: libvirt's <os> <kernel>, <initrd> and <cmdline>. */
export interface DirectKernelBoot {
  kernel: string;
  initrd: string;
  cmdline: string;
}

export interface TestDomainOptions {
  disks?: DiskSpec[];
  cdrom?: boolean;
  machine?: "q35" | "pc";
  start?: boolean;
  guestAgentChannel?: boolean;
  /** Add a virtio-scsi controller, so sd* disks can be hot-plugged and unplugged (attachDisk). */
  scsiController?: boolean;
  boot?: DirectKernelBoot;
  /** Serial port 0 on the unix socket `consoleSocket` (qemu listens), its output logged to `consoleLog`. */
  serialConsole?: boolean;
  /** ACPI, so the guest can power itself off. */
  acpi?: boolean;
  memoryMiB?: number;
  uri?: string;
  connection?: Connection;
}

export interface TestDisk {
  target: string;
  path: string;
  format: "qcow2" | "raw";
  size: number;
  /** The content written so far (spec content plus later writes through the helpers). */
  content: ContentOp[];
  /** Made by DiskSpec.makeImage: `content` does not describe it. */
  madeByCaller?: true;
}

interface AfterHook {
  after(fn: () => Promise<void> | void): void;
}

/**
 * Content used when a DiskSpec gives none: patterns, seeded random data and holes, scaled to the
 * disk (for 64 MiB: 1 MiB of 0x11+i at 0, 2 MiB random at 4 MiB, 64 KiB of 0xa0+i at 7 MiB + 4 KiB,
 * 64 KiB of 0xee at the end).
 */
export function defaultContent(index: number, size = 64 * MiB): ContentOp[] {
  const unit = Math.max(4096, Math.floor(size / 64 / 4096) * 4096); // 1 MiB for 64 MiB
  const small = Math.min(64 * 1024, unit);
  return [
    { pattern: 0x11 + index, offset: 0, length: unit },
    { seed: 1000 + index, offset: 4 * unit, length: 2 * unit },
    { pattern: 0xa0 + index, offset: 7 * unit + 4096, length: small },
    { pattern: 0xee, offset: size - small, length: small },
  ];
}

/** Deterministic pseudo-random bytes (xorshift128+ seeded with splitmix64). */
export function seededBytes(seed: number, length: number): Buffer {
  const mask = (1n << 64n) - 1n;
  let z = BigInt(seed >>> 0) + 0x9e3779b97f4a7c15n;
  const splitmix = (): bigint => {
    z = (z + 0x9e3779b97f4a7c15n) & mask;
    let x = z;
    x = ((x ^ (x >> 30n)) * 0xbf58476d1ce4e5b9n) & mask;
    x = ((x ^ (x >> 27n)) * 0x94d049bb133111ebn) & mask;
    return x ^ (x >> 31n);
  };
  // 32-bit xorshift128 state (fast in plain JS numbers).
  const s = new Uint32Array(4);
  const a = splitmix();
  const b = splitmix();
  s[0] = Number(a & 0xffffffffn) || 1;
  s[1] = Number(a >> 32n);
  s[2] = Number(b & 0xffffffffn);
  s[3] = Number(b >> 32n);
  const out = Buffer.alloc(length);
  const words = new Uint32Array(out.buffer, out.byteOffset, Math.floor(length / 4));
  let t: number;
  const next = (): number => {
    t = s[0]! ^ (s[0]! << 11);
    s[0] = s[1]!;
    s[1] = s[2]!;
    s[2] = s[3]!;
    s[3] = (s[3]! ^ (s[3]! >>> 19) ^ (t ^ (t >>> 8))) >>> 0;
    return s[3]!;
  };
  for (let i = 0; i < words.length; i++) words[i] = next();
  for (let i = words.length * 4; i < length; i++) out[i] = next() & 0xff;
  return out;
}

function applyOp(buf: Buffer, op: ContentOp): void {
  const end = op.offset + op.length;
  if ("pattern" in op) buf.fill(op.pattern, op.offset, end);
  else if ("seed" in op) seededBytes(op.seed, op.length).copy(buf, op.offset);
  else buf.fill(0, op.offset, end);
}

/** sha256 (hex) of a disk of `size` bytes after applying `ops` to zeros. */
export function contentHash(size: number, ops: readonly ContentOp[]): string {
  const buf = Buffer.alloc(size);
  for (const op of ops) applyOp(buf, op);
  return createHash("sha256").update(buf).digest("hex");
}

async function run(cmd: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileP(cmd, args, { maxBuffer: 16 * MiB });
    return stdout;
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string };
    const detail = [err.stderr, err.stdout].filter((x) => x && x.trim()).join("\n") || err.message;
    throw new Error(`${cmd} ${args.join(" ")} failed: ${detail.trim()}`);
  }
}

/** sha256 of the raw bytes `nbdcopy <source> -` writes to stdout. */
function nbdcopyHash(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("nbdcopy", args, { stdio: ["ignore", "pipe", "pipe"] });
    const hash = createHash("sha256");
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => hash.update(chunk));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) resolve(hash.digest("hex"));
      else reject(new Error(`nbdcopy ${args.join(" ")} failed (${code}): ${stderr.trim()}`));
    });
  });
}


const UNDEFINE_FLAGS =
  C.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA |
  C.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
  C.VIR_DOMAIN_UNDEFINE_NVRAM |
  C.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE;

/** Destroys (if running) and undefines a domain, ignoring "already gone". */
async function removeDomain(domain: Domain): Promise<void> {
  const gone = [C.VIR_ERR_NO_DOMAIN, C.VIR_ERR_OPERATION_INVALID];
  try {
    if (await domain.isActive()) await domain.destroy();
  } catch (e) {
    if (!isLibvirtError(e, gone)) throw e;
  }
  try {
    if (await domain.isPersistent()) await domain.undefine(UNDEFINE_FLAGS);
  } catch (e) {
    if (!isLibvirtError(e, gone)) throw e;
  }
  domain.free();
}

const STALE_NAME = /^vnbt-(\d+)-/;

/**
 * Removes test domains, transient test storage pools and temp dirs left behind by test
 * processes that are gone (names carry the creating PID). With `all`, everything starting with
 * "vnbt-" goes, running tests or not. Resolves with the removed domain and pool names.
 */
export async function sweepStaleTestDomains(options: { all?: boolean; connection?: Connection } = {}): Promise<string[]> {
  const conn = options.connection ?? (await Connection.open(DEFAULT_URI));
  const removed: string[] = [];
  try {
    for (const d of await conn.listAllDomains()) {
      const m = STALE_NAME.exec(d.name);
      const stale = d.name.startsWith(TEST_DOMAIN_PREFIX) && (options.all || (m && !pidAlive(Number(m[1]))));
      if (stale) {
        await removeDomain(d);
        removed.push(d.name);
      } else {
        d.free();
      }
    }
  } finally {
    if (!options.connection) await conn.close();
  }
  // Transient storage pools made by tests (libvirt-storage.test.ts), through virsh.
  const pools = await run("virsh", ["-c", DEFAULT_URI, "pool-list", "--all", "--name"]).catch(() => "");
  for (const pool of pools.split("\n").map((x) => x.trim())) {
    const m = STALE_NAME.exec(pool);
    if (pool.startsWith(TEST_DOMAIN_PREFIX) && (options.all || (m && !pidAlive(Number(m[1]))))) {
      await run("virsh", ["-c", DEFAULT_URI, "pool-destroy", pool]).catch(() => "");
      await run("virsh", ["-c", DEFAULT_URI, "pool-undefine", pool]).catch(() => "");
      removed.push(pool);
    }
  }
  const base = process.env["VNBT_TMPDIR"] ?? tmpdir();
  for (const entry of await readdir(base).catch(() => [] as string[])) {
    const m = /^vnbt-dom-(\d+)-/.exec(entry);
    if (m && (options.all || !pidAlive(Number(m[1])))) {
      await rm(join(base, entry), { recursive: true, force: true });
    }
  }
  return removed;
}

let swept: Promise<unknown> | null = null;

/**
 * libvirt 9.0 re-probes qemu on every domain definition (about 4 s each, ~50 s per define) when
 * /dev/kvm exists but the qemu user cannot open it: the capability cache then never validates.
 * Debian's udev rule gives /dev/kvm group kvm, mode 0660; containers often lack it.
 */
async function warnAboutKvmPermissions(): Promise<void> {
  const st = await stat("/dev/kvm").catch(() => null);
  if (st && (st.mode & 0o060) !== 0o060) {
    process.emitWarning(
      "/dev/kvm is not group read/writable: libvirt will re-probe qemu on every define/start " +
        "(very slow). Fix: chgrp kvm /dev/kvm && chmod 0660 /dev/kvm",
    );
  }
}

function targetName(index: number, prefix = "sd"): string {
  // sda … sdz, sdaa … (libvirt's naming; vd* alike).
  let n = index;
  let s = "";
  do {
    s = String.fromCharCode(97 + (n % 26)) + s;
    n = Math.floor(n / 26) - 1;
  } while (n >= 0);
  return `${prefix}${s}`;
}

/** Target names in spec order, numbered per bus: sata disks sda, sdb, …; virtio disks vda, …. */
function diskTargets(specs: DiskSpec[]): string[] {
  const counts = { sata: 0, virtio: 0 };
  return specs.map((spec) => {
    const bus = spec.bus ?? "sata";
    return targetName(counts[bus]++, bus === "virtio" ? "vd" : "sd");
  });
}

/** Where a test domain's serial console listens and logs (a directory qemu may write to). */
function consolePaths(dir: string): { dir: string; socket: string; log: string } {
  const consoleDir = join(dir, "console");
  return { dir: consoleDir, socket: join(consoleDir, "console.sock"), log: join(consoleDir, "console.log") };
}

function osXml(opts: TestDomainOptions): string[] {
  const lines = [`  <os>`, `    <type arch='x86_64' machine='${opts.machine ?? "q35"}'>hvm</type>`];
  if (opts.boot) {
    lines.push(
      `    <kernel>${opts.boot.kernel}</kernel>`,
      `    <initrd>${opts.boot.initrd}</initrd>`,
      `    <cmdline>${opts.boot.cmdline}</cmdline>`,
    );
  }
  lines.push(`  </os>`);
  if (opts.acpi) lines.push(`  <features><acpi/></features>`);
  return lines;
}

function diskXml(d: TestDisk): string[] {
  return [
    `    <disk type='file' device='disk'>`,
    `      <driver name='qemu' type='${d.format}'/>`,
    `      <source file='${d.path}'/>`,
    `      <target dev='${d.target}' bus='${d.target.startsWith("vd") ? "virtio" : "sata"}'/>`,
    `    </disk>`,
  ];
}

function serialConsoleXml(dir: string): string[] {
  const { socket, log } = consolePaths(dir);
  return [
    `    <serial type='unix'>`,
    `      <source mode='bind' path='${socket}'/>`,
    `      <log file='${log}' append='off'/>`,
    `      <target port='0'/>`,
    `    </serial>`,
  ];
}

function domainXml(name: string, dir: string, opts: TestDomainOptions, disks: TestDisk[]): string {
  const lines = [
    `<domain type='qemu'>`,
    `  <name>${name}</name>`,
    `  <memory unit='MiB'>${opts.memoryMiB ?? 64}</memory>`,
    `  <vcpu>1</vcpu>`,
    ...osXml(opts),
    `  <on_poweroff>destroy</on_poweroff>`,
    `  <on_reboot>destroy</on_reboot>`,
    `  <on_crash>destroy</on_crash>`,
    `  <devices>`,
  ];
  for (const d of disks) lines.push(...diskXml(d));
  if (opts.cdrom) {
    lines.push(
      `    <disk type='file' device='cdrom'>`,
      `      <driver name='qemu' type='raw'/>`,
      `      <target dev='${targetName(disks.filter((d) => d.target.startsWith("sd")).length)}' bus='sata'/>`,
      `      <readonly/>`,
      `    </disk>`,
    );
  }
  if (opts.guestAgentChannel) {
    lines.push(
      `    <channel type='unix'>`,
      `      <target type='virtio' name='org.qemu.guest_agent.0'/>`,
      `    </channel>`,
    );
  }
  if (opts.scsiController) lines.push(`    <controller type='scsi' index='0' model='virtio-scsi'/>`);
  if (opts.serialConsole) lines.push(...serialConsoleXml(dir));
  lines.push(`    <memballoon model='none'/>`, `  </devices>`, `</domain>`);
  return lines.join("\n");
}

function opToQemuIo(op: ContentOp, randomFile: string | null): string {
  if ("pattern" in op) return `write -P 0x${op.pattern.toString(16)} ${op.offset} ${op.length}`;
  if ("seed" in op) return `write -s ${randomFile} ${op.offset} ${op.length}`;
  return `write -z ${op.offset} ${op.length}`;
}

/** Creates the disk images: made by the spec's makeImage, or empty with the spec content written by qemu-io. */
async function makeDiskImages(dir: string, specs: DiskSpec[], disks: TestDisk[]): Promise<void> {
  for (const [i, d] of disks.entries()) {
    const make = specs[i]!.makeImage;
    if (make) await make(d.path, d.format, d.size);
    else await run("qemu-img", ["create", "-q", "-f", d.format, d.path, String(d.size)]);
  }
  for (const d of disks) {
    const ops = d.content;
    if (ops.length === 0) continue;
    const args = ["-f", d.format];
    for (const op of ops) {
      let file: string | null = null;
      if ("seed" in op) {
        file = join(dir, `random-${op.seed}-${op.length}.bin`);
        await writeFile(file, seededBytes(op.seed, op.length), { mode: 0o644 });
      }
      args.push("-c", opToQemuIo(op, file));
    }
    args.push(d.path);
    await run("qemu-io", args);
  }
}

/** The console's directory: qemu (libvirt-qemu) creates the socket there. */
async function makeConsoleDir(dir: string): Promise<void> {
  const consoleDir = consolePaths(dir).dir;
  await mkdir(consoleDir);
  await chmod(consoleDir, 0o777);
}

export class TestDomain {
  #randomCounter = 0;
  #cleaned = false;

  private constructor(
    readonly name: string,
    readonly dir: string,
    readonly connection: Connection,
    readonly domain: Domain,
    readonly disks: TestDisk[],
    private readonly ownsConnection: boolean,
  ) {}

  /** @internal use createTestDomain / testDomain / withDomain. */
  static async create(opts: TestDomainOptions = {}): Promise<TestDomain> {
    swept ??= Promise.all([sweepStaleTestDomains().catch(() => []), warnAboutKvmPermissions()]);
    await swept;
    const id = `${process.pid}-${randomBytes(4).toString("hex")}`;
    const name = `${TEST_DOMAIN_PREFIX}${id}`;
    const base = process.env["VNBT_TMPDIR"] ?? tmpdir();
    const dir = await mkdtemp(join(base, `${DIR_PREFIX}${id}-`));
    // qemu runs as libvirt-qemu: it must reach the images (libvirt relabels the files themselves).
    await chmod(dir, 0o755);
    const specs = opts.disks ?? [{}];
    const targets = diskTargets(specs);
    const disks: TestDisk[] = specs.map((spec, i) => {
      const format = spec.format ?? "qcow2";
      const size = spec.size ?? 64 * MiB;
      const target = targets[i]!;
      const path = join(dir, `${target}.${format}`);
      if (spec.makeImage) return { target, path, format, size, content: [], madeByCaller: true };
      return { target, path, format, size, content: [...(spec.content ?? defaultContent(i, size))] };
    });
    const ownsConnection = !opts.connection;
    const conn = opts.connection ?? (await Connection.open(opts.uri ?? DEFAULT_URI));
    let domain: Domain | undefined;
    try {
      await makeDiskImages(dir, specs, disks);
      if (opts.serialConsole) await makeConsoleDir(dir);
      domain = await conn.defineXML(domainXml(name, dir, opts, disks));
      const td = new TestDomain(name, dir, conn, domain, disks, ownsConnection);
      if (opts.start) await td.start();
      return td;
    } catch (e) {
      if (domain) await removeDomain(domain).catch(() => undefined);
      if (ownsConnection) await conn.close().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
      throw e;
    }
  }

  /** The serial console's unix socket (with `serialConsole`; qemu listens while running). */
  get consoleSocket(): string {
    return consolePaths(this.dir).socket;
  }

  /** Everything the serial console printed since the last start (with `serialConsole`). */
  get consoleLog(): string {
    return consolePaths(this.dir).log;
  }

  disk(target: string): TestDisk {
    const d = this.disks.find((x) => x.target === target);
    if (!d) throw new Error(`test domain ${this.name} has no disk ${target}`);
    return d;
  }

  async start(flags = 0): Promise<void> {
    await this.domain.create(flags);
  }

  /**
   * Redefines the (inactive) domain with a read-only pflash UEFI loader and an nvram file,
   * copies of the host's OVMF files in the domain's directory; returns their paths.
   */
  async addUefi(): Promise<{ loader: string; nvram: string }> {
    const loader = join(this.dir, "OVMF_CODE_4M.fd");
    const nvram = join(this.dir, `${this.name}_VARS.fd`);
    await copyFile(OVMF_CODE, loader);
    await copyFile(OVMF_VARS, nvram);
    const inactive = await this.domain.xmlDesc(C.VIR_DOMAIN_XML_INACTIVE);
    (
      await this.connection.defineXML(
        inactive
          .replace(/(<type [^>]*>hvm<\/type>)/, `$1\n    <loader readonly='yes' type='pflash'>${loader}</loader>\n    <nvram>${nvram}</nvram>`)
          .replace("</os>", "</os>\n  <features><acpi/></features>"),
      )
    ).free();
    return { loader, nvram };
  }

  /** Redefines the (inactive) domain with an emulated TPM 2.0 (swtpm); returns where libvirt keeps its state. */
  async addTpm(model = "tpm-crb"): Promise<{ stateFile: string }> {
    const inactive = await this.domain.xmlDesc(C.VIR_DOMAIN_XML_INACTIVE);
    const xml = inactive.replace("</devices>", `  <tpm model='${model}'><backend type='emulator' version='2.0'/></tpm>\n  </devices>`);
    const defined = await this.connection.defineXML(xml);
    const uuid = DomainXml.parse(await defined.xmlDesc(0)).uuid;
    defined.free();
    return { stateFile: `/var/lib/libvirt/swtpm/${uuid}/tpm2/tpm2-00.permall` };
  }

  async destroy(): Promise<void> {
    if (await this.domain.isActive()) await this.domain.destroy();
  }

  isRunning(): Promise<boolean> {
    return this.domain.isActive();
  }

  /** HMP command; a reply that reports an error throws. */
  async hmp(command: string): Promise<string> {
    const reply = await this.domain.hmp(command);
    if (/^(Error|error):|Could not|Cannot|failed/m.test(reply)) {
      throw new Error(`HMP "${command}" on ${this.name}: ${reply.trim()}`);
    }
    return reply;
  }

  /**
   * qemu node name (for nbd_server_add) and qdev (id or QOM path, for qemu-io -d) of a running
   * disk, from query-block (src/libvirt/block-bitmaps.ts).
   */
  async blockNode(target: string): Promise<{ node: string; qdev: string }> {
    const found = (await listBlockBitmaps(this.domain)).find((x) => x.target === target);
    if (!found) throw new Error(`disk ${target} of ${this.name} has no block node (is the domain running?)`);
    return { node: found.node, qdev: found.qdev };
  }

  async #write(target: string, op: ContentOp): Promise<void> {
    const disk = this.disk(target);
    let file: string | null = null;
    if ("seed" in op) {
      file = join(this.dir, `random-w${this.#randomCounter++}-${op.seed}-${op.length}.bin`);
      await writeFile(file, seededBytes(op.seed, op.length), { mode: 0o644 });
    }
    const cmd = opToQemuIo(op, file);
    if (await this.isRunning()) {
      const { qdev } = await this.blockNode(target);
      await this.hmp(`qemu-io -d ${qdev} "${cmd}"`);
    } else {
      await run("qemu-io", ["-f", disk.format, "-c", cmd, disk.path]);
    }
    if (file) await rm(file, { force: true });
    disk.content.push(op);
  }

  /** Fills a range with one byte value (running: HMP qemu-io on the live disk). */
  writePattern(target: string, offset: number, length: number, pattern: number): Promise<void> {
    return this.#write(target, { pattern, offset, length });
  }

  /** Writes seededBytes(seed, length) at offset. */
  writeRandom(target: string, offset: number, length: number, seed: number): Promise<void> {
    return this.#write(target, { seed, offset, length });
  }

  /** Writes zeroes (qemu-io write -z) over a range. */
  writeZeroes(target: string, offset: number, length: number): Promise<void> {
    return this.#write(target, { zero: true, offset, length });
  }

  /** sha256 of the content the helpers wrote (what diskHash should report). */
  expectedHash(target: string): string {
    const d = this.disk(target);
    if (d.madeByCaller) throw new Error(`expectedHash: disk ${target} of ${this.name} was made by DiskSpec.makeImage (content unknown)`);
    return contentHash(d.size, d.content);
  }

  /**
   * sha256 of a disk's full virtual content: from the running qemu through a private NBD export,
   * or from the image file when shut off.
   */
  async diskHash(target: string): Promise<string> {
    const disk = this.disk(target);
    if (!(await this.isRunning())) {
      return nbdcopyHash(["--", "[", "qemu-nbd", "-r", "-f", disk.format, disk.path, "]", "-"]);
    }
    const { node } = await this.blockNode(target);
    const sockDir = join(this.dir, "nbd");
    await mkdir(sockDir, { recursive: true });
    await chmod(sockDir, 0o777);
    const sock = join(sockDir, `${target}.sock`);
    // A backup job that just ended may still hold qemu's one NBD server for a moment (libvirt
    // stops it after the job): wait for it instead of failing.
    for (let i = 0; ; i++) {
      try {
        await this.hmp(`nbd_server_start unix:${sock}`);
        break;
      } catch (e) {
        if (i >= 100 || !/already running/.test((e as Error).message)) throw e;
        await sleep(100);
      }
    }
    try {
      await this.hmp(`nbd_server_add ${node} ${target}`);
      return await nbdcopyHash([`nbd+unix:///${target}?socket=${sock}`, "-"]);
    } finally {
      await this.domain.hmp("nbd_server_stop").catch(() => undefined);
      await rm(sock, { force: true });
    }
  }

  /** diskHash for every disk, by target. */
  async diskHashes(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const d of this.disks) out[d.target] = await this.diskHash(d.target);
    return out;
  }

  // Drift: what changes under a backup chain between runs (disks added, removed, resized,
  // bitmaps left in-use by a crashed writer, checkpoint metadata lost).

  async #virsh(args: string[]): Promise<string> {
    return run("virsh", ["-c", this.connection.uri ?? DEFAULT_URI, ...args]);
  }

  /**
   * Adds an empty qcow2 disk of `size` bytes (a new image in `dir`): live and persistent when
   * running, to the definition when shut off. The bus follows the target: vd* virtio, sd* scsi
   * (live, sd* needs `scsiController`: SATA cannot be hot-plugged, and q35 test domains have no
   * PCI slot for a new controller).
   */
  async attachDisk(target: string, size: number): Promise<TestDisk> {
    if (this.disks.some((d) => d.target === target)) throw new Error(`test domain ${this.name} already has a disk ${target}`);
    const bus = target.startsWith("vd") ? "virtio" : target.startsWith("sd") ? "scsi" : null;
    if (!bus) throw new Error(`attachDisk: target ${target} is neither vd* nor sd*`);
    const path = join(this.dir, `${target}.qcow2`);
    await run("qemu-img", ["create", "-q", "-f", "qcow2", path, String(size)]);
    const live = await this.isRunning();
    await this.#virsh(["attach-disk", this.name, path, target, "--driver", "qemu", "--subdriver", "qcow2", "--targetbus", bus, live ? "--persistent" : "--config"]);
    const disk: TestDisk = { target, path, format: "qcow2", size, content: [] };
    this.disks.push(disk);
    return disk;
  }

  /**
   * Removes a disk from the domain (live and persistent when running), keeping its image.
   * Live, only a SCSI disk leaves at once: a virtio (PCI) unplug waits for a guest that never
   * answers here, which fails after 5 s.
   */
  async detachDisk(target: string): Promise<TestDisk> {
    const disk = this.disk(target);
    const live = await this.isRunning();
    await this.#virsh(["detach-disk", this.name, target, live ? "--persistent" : "--config"]);
    if (live) {
      const deadline = Date.now() + 5000;
      while (DomainXml.parse(await this.domain.xmlDesc()).disk(target)) {
        if (Date.now() > deadline) throw new Error(`disk ${target} of ${this.name} is still attached 5 s after detach-disk (a PCI unplug needs a guest)`);
        await sleep(100);
      }
    }
    this.disks.splice(this.disks.indexOf(disk), 1);
    return disk;
  }

  /**
   * Grows a disk to `size` bytes: `virsh blockresize` when running, `qemu-img resize` when shut
   * off. The new space reads as zeroes (expectedHash follows).
   */
  async blockResize(target: string, size: number): Promise<void> {
    const disk = this.disk(target);
    if (size < disk.size) throw new Error(`blockResize grows only (${target}: ${disk.size} → ${size})`);
    if (await this.isRunning()) await this.#virsh(["blockresize", this.name, target, `${size}B`]);
    else await run("qemu-img", ["resize", "-q", "-f", disk.format, disk.path, String(size)]);
    disk.size = size;
  }

  /**
   * Leaves the disk's image as a crashed writer would (domain shut off): qemu-nbd opens it
   * read-write, which flags every bitmap in it "in-use", answers a client, and is SIGKILLed.
   * (`-t`: without it qemu-nbd exits cleanly when its first client leaves, clearing the flags.)
   */
  async crashQemuNbdOn(target: string): Promise<void> {
    if (await this.isRunning()) throw new Error(`crashQemuNbdOn: ${this.name} must be shut off`);
    const disk = this.disk(target);
    const sock = join(this.dir, `crash-${target}.sock`);
    const child = spawn("qemu-nbd", ["-t", "-f", disk.format, "-k", sock, disk.path], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<void>((resolve) => child.on("close", () => resolve()));
    let exitedEarly = false;
    void exited.then(() => (exitedEarly = true));
    try {
      for (let i = 0; ; i++) {
        if (exitedEarly) throw new Error(`qemu-nbd on ${disk.path} exited: ${stderr.trim()}`);
        try {
          await run("nbdinfo", ["--size", `nbd+unix:///?socket=${sock}`]);
          break;
        } catch (e) {
          if (i >= 100) throw e;
          await sleep(100);
        }
      }
    } finally {
      child.kill("SIGKILL");
      await exited;
      await rm(sock, { force: true });
    }
  }

  /**
   * Undefines the domain with its checkpoint metadata (the bitmaps stay in the images) and
   * defines it again from its inactive XML. Shut off, libvirt forgets every checkpoint; a running
   * domain keeps running (transient in between) and libvirt 9.0 keeps its checkpoints (it drops
   * them only for an inactive domain).
   */
  async redefine(): Promise<void> {
    const xml = await this.domain.xmlDesc(C.VIR_DOMAIN_XML_INACTIVE);
    await this.domain.undefine(C.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | C.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM);
    (await this.connection.defineXML(xml)).free();
  }

  /** After a libvirtd restart (its connection died): a new connection, the domain looked up again. */
  async reconnect(): Promise<void> {
    const old = this.connection;
    const connection = await Connection.open(old.uri ?? DEFAULT_URI);
    const domain = await connection.lookupDomain(this.name);
    Object.assign(this, { connection, domain, ownsConnection: true });
    await old.close().catch(() => undefined);
  }

  /** Destroys and undefines the domain, closes its own connection, deletes the files. Idempotent. */
  async cleanup(): Promise<void> {
    if (this.#cleaned) return;
    this.#cleaned = true;
    const errors: unknown[] = [];
    try {
      await removeDomain(this.domain);
    } catch (e) {
      // The handle may be unusable (e.g. the test closed the connection): go by name.
      try {
        const conn = await Connection.open(this.connection.uri);
        try {
          await removeDomain(await conn.lookupDomain(this.name));
        } finally {
          await conn.close();
        }
      } catch (e2) {
        if (!isLibvirtError(e2, C.VIR_ERR_NO_DOMAIN)) errors.push(e, e2);
      }
    }
    if (this.ownsConnection) await this.connection.close().catch((e) => errors.push(e));
    await rm(this.dir, { recursive: true, force: true }).catch((e) => errors.push(e));
    if (errors.length > 0) throw new AggregateError(errors, `cleanup of test domain ${this.name} failed`);
  }
}

/** Creates a test domain; the caller must `cleanup()` it. */
export function createTestDomain(opts: TestDomainOptions = {}): Promise<TestDomain> {
  return TestDomain.create(opts);
}

/** Creates a test domain and registers its cleanup with `t.after`. */
export async function testDomain(t: AfterHook, opts: TestDomainOptions = {}): Promise<TestDomain> {
  const d = await TestDomain.create(opts);
  t.after(() => d.cleanup());
  return d;
}

/** Runs `fn` with a fresh test domain and removes it afterwards (also registered with `t.after`). */
export async function withDomain<T>(t: AfterHook, opts: TestDomainOptions, fn: (d: TestDomain) => Promise<T>): Promise<T> {
  const d = await testDomain(t, opts);
  try {
    return await fn(d);
  } finally {
    await d.cleanup();
  }
}
