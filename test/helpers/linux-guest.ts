/**
 * A tiny bootable Linux guest for integration tests that need a real OS writing to its disk
 * (live restore, issue 17): Debian's kernel (linux-image-amd64) and an initramfs with
 * busybox-static, booted by libvirt under TCG, plus an ext4 data disk (virtio-blk, vda).
 *
 *   const g = await linuxGuest(t, { marker: "hello" });   // domain defined, cleanup registered
 *   await g.start();
 *   const { content, seconds } = await g.waitForMarker();  // "hello", seconds since start()
 *   await g.waitForLine(/^TICK 3$/);
 *   const last = await g.stop();                           // clean poweroff; the last tick
 *   await g.fsck();  await g.readFile("tick.log");         // the data disk, shut off
 *
 * How the guest works
 * -------------------
 * Boot files (built once per kernel version and GUEST_HELPER_VERSION, cached in
 * $VNBT_TMPDIR or the temp dir under `vnbt-linux-guest/`): the kernel is the bzImage's own
 * vmlinux (an ELF that qemu starts through its PVH entry: no real-mode setup and no xz
 * decompression under TCG, which halves the boot time), or the bzImage when the kernel has no
 * PVH support or no xz payload. The initramfs is an uncompressed cpio (newc, written here):
 * /bin/busybox, the modules the data disk needs that the kernel has not built in (virtio_pci,
 * virtio_blk, crc32c_generic for ext4's checksums, ext4 and their modules.dep dependencies,
 * in load order, decompressed if the kernel ships them compressed), /dev/console and /init.
 * The kernel command line is `console=ttyS0 quiet panic=-1` (a panic reboots, and the test
 * domain is destroyed on reboot). /init mounts proc, sys and devtmpfs, insmods the modules,
 * mounts /dev/vda on /data and prints `MARKER <first line of /data/marker>`; then, every
 * second, appends `tick N` to /data/tick.log, syncs and prints `TICK N`. A line `stop` on the
 * serial console makes it unmount /data, print `STOPPED N` (N: the last tick) and
 * `poweroff -f` (ACPI: the domain shuts off). Anything that goes wrong prints `HALT <why>`
 * and powers off. The serial console is a unix socket qemu listens on; everything it prints
 * also goes to a log file (libvirt's <log>), which waitForLine reads.
 */
import { existsSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { chmod, mkdir, mkdtemp, open, readFile, readdir, rename, rm, writeFile } from "node:fs/promises";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { execa } from "execa";
import { MiB, createTestDomain, type TestDisk, type TestDomain } from "./domains.js";

/** Bump when the initramfs or its /init change: the cached boot files are rebuilt. */
const GUEST_HELPER_VERSION = 1;
/** What the data disk needs (crc32c_generic: ext4's and jbd2's softdep crypto-crc32c). */
export const GUEST_MODULES = ["virtio_pci", "virtio_blk", "crc32c_generic", "ext4"];
const BUSYBOX = "/bin/busybox";
const CMDLINE = "console=ttyS0 quiet panic=-1";
const DATA_DISK = "vda";

interface AfterHook {
  after(fn: () => Promise<void> | void): void;
}

// ---- the installed kernel and its modules

export interface InstalledKernel {
  version: string;
  bzImage: string;
  modulesDir: string;
}

function compareVersions(a: string, b: string): number {
  return a.localeCompare(b, "en", { numeric: true });
}

/** The newest /boot/vmlinuz-<version> with modules under /lib/modules/<version>. */
export async function installedKernel(): Promise<InstalledKernel> {
  const versions = (await readdir("/boot").catch(() => [] as string[]))
    .map((name) => /^vmlinuz-(.+)$/.exec(name)?.[1])
    .filter((v): v is string => !!v && existsSync(`/lib/modules/${v}/modules.dep`))
    .sort(compareVersions);
  const version = versions.at(-1);
  if (!version) throw new Error("no kernel in /boot with modules in /lib/modules: run scripts/setup-host.sh (linux-image-amd64)");
  return { version, bzImage: `/boot/vmlinuz-${version}`, modulesDir: `/lib/modules/${version}` };
}

/** A module's name from its path in modules.dep (`kernel/lib/crc16.ko.xz` → crc16). */
export function moduleName(path: string): string {
  return basename(path).replace(/\.ko(\.(xz|zst|gz))?$/, "").replace(/-/g, "_");
}

/** modules.dep as path → dependency paths. */
function parseModulesDep(text: string): Map<string, string[]> {
  const deps = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const [path, rest] = line.split(":");
    if (path && rest !== undefined) deps.set(path, rest.trim().split(/\s+/).filter(Boolean));
  }
  return deps;
}

/**
 * The module files (relative to modulesDir) that loading `names` takes, in insmod order
 * (dependencies first), leaving out modules built into the kernel.
 */
export async function moduleLoadOrder(modulesDir: string, names: string[]): Promise<string[]> {
  const builtin = new Set((await readFile(join(modulesDir, "modules.builtin"), "utf8")).split("\n").filter(Boolean).map(moduleName));
  const deps = parseModulesDep(await readFile(join(modulesDir, "modules.dep"), "utf8"));
  const byName = new Map([...deps.keys()].map((path) => [moduleName(path), path]));
  const order: string[] = [];
  const visit = (path: string): void => {
    if (order.includes(path)) return;
    for (const dep of deps.get(path) ?? []) visit(dep);
    order.push(path);
  };
  for (const name of names) {
    if (builtin.has(name)) continue;
    const path = byName.get(name);
    if (!path) throw new Error(`kernel module ${name} is neither built in nor in ${modulesDir}/modules.dep`);
    visit(path);
  }
  return order;
}

const DECOMPRESSORS: Record<string, string> = { ".xz": "xz", ".zst": "zstd", ".gz": "gzip" };

/** A module file's ELF bytes (insmod in busybox takes uncompressed modules). */
async function moduleBytes(path: string): Promise<Buffer> {
  const suffix = /\.ko(\.\w+)$/.exec(path)?.[1];
  if (!suffix) return readFile(path);
  const tool = DECOMPRESSORS[suffix];
  if (!tool) throw new Error(`cannot decompress kernel module ${path}`);
  return Buffer.from((await execa(tool, ["-dc", path], { encoding: "buffer" })).stdout);
}

// ---- the boot files

/** One cpio entry: a directory, a regular file (`data`) or a device node (`rdev`). */
export interface CpioEntry {
  name: string;
  mode: number;
  data?: Buffer;
  rdev?: [major: number, minor: number];
}

const pad4 = (n: number): Buffer => Buffer.alloc((4 - (n % 4)) % 4);

function newcHeader(e: CpioEntry, ino: number, nameSize: number): Buffer {
  const isDir = (e.mode & 0o170000) === 0o040000;
  const fields = [ino, e.mode, 0, 0, isDir ? 2 : 1, 0, e.data?.length ?? 0, 0, 0, e.rdev?.[0] ?? 0, e.rdev?.[1] ?? 0, nameSize, 0];
  return Buffer.from("070701" + fields.map((f) => f.toString(16).padStart(8, "0")).join(""), "latin1");
}

/** A cpio archive in the "newc" format the kernel unpacks as initramfs (owner root, mtime 0). */
export function newcArchive(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  const all = [...entries, { name: "TRAILER!!!", mode: 0 }];
  for (const [i, e] of all.entries()) {
    const name = Buffer.from(`${e.name}\0`, "utf8");
    const header = newcHeader(e, i + 1, name.length);
    parts.push(header, name, pad4(header.length + name.length));
    if (e.data) parts.push(e.data, pad4(e.data.length));
  }
  return Buffer.concat(parts);
}

/** The guest's /init (see the header); `modules`: file names under /lib/modules in load order. */
export function initScript(modules: string[]): string {
  return `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
halt() { echo "HALT $1"; poweroff -f; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in ${modules.join(" ")}; do insmod /lib/modules/$m || halt "insmod $m failed"; done
i=0
while [ ! -b /dev/${DATA_DISK} ]; do i=$((i+1)); [ $i -gt 100 ] && halt "no /dev/${DATA_DISK}"; sleep 0.1; done
mount -t ext4 /dev/${DATA_DISK} /data || halt "mount /dev/${DATA_DISK} failed"
echo "MARKER $(head -n 1 /data/marker)"
stty -F /dev/ttyS0 -echo
(while read -r line; do [ "$line" = stop ] && touch /tmp/stop; done < /dev/ttyS0) &
n=0
while [ ! -e /tmp/stop ]; do
  n=$((n+1))
  echo "tick $n" >> /data/tick.log
  sync
  echo "TICK $n"
  sleep 1
done
umount /data || halt "umount /data failed"
echo "STOPPED $n"
poweroff -f
`;
}

/** The initramfs: busybox, the modules, /dev/console and /init. */
async function buildInitramfs(kernel: InstalledKernel): Promise<Buffer> {
  const modules = await moduleLoadOrder(kernel.modulesDir, GUEST_MODULES);
  const dir = (name: string): CpioEntry => ({ name, mode: 0o040755 });
  const entries: CpioEntry[] = ["bin", "dev", "proc", "sys", "data", "tmp", "lib", "lib/modules"].map(dir);
  entries.push({ name: "dev/console", mode: 0o020600, rdev: [5, 1] });
  entries.push({ name: "bin/busybox", mode: 0o100755, data: await readFile(BUSYBOX) });
  const files = modules.map((m) => `${moduleName(m)}.ko`);
  for (const [i, m] of modules.entries()) {
    entries.push({ name: `lib/modules/${files[i]}`, mode: 0o100644, data: await moduleBytes(join(kernel.modulesDir, m)) });
  }
  entries.push({ name: "init", mode: 0o100755, data: Buffer.from(initScript(files)) });
  return newcArchive(entries);
}

/** The compressed kernel inside a bzImage (boot protocol ≥ 2.08: payload_offset/length), or null. */
export function bzImagePayload(image: Buffer): Buffer | null {
  if (image.length < 0x250 || image.toString("latin1", 0x202, 0x206) !== "HdrS" || image.readUInt16LE(0x206) < 0x208) return null;
  const setupSectors = image[0x1f1] || 4;
  const start = (setupSectors + 1) * 512 + image.readUInt32LE(0x248);
  return image.subarray(start, start + image.readUInt32LE(0x24c));
}

const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);

/** Writes the bzImage's vmlinux to `out` when qemu can boot it (PVH, xz payload); false if not. */
async function extractVmlinux(kernel: InstalledKernel, out: string): Promise<boolean> {
  const config = await readFile(`/boot/config-${kernel.version}`, "utf8").catch(() => "");
  const payload = bzImagePayload(await readFile(kernel.bzImage));
  if (!/^CONFIG_PVH=y$/m.test(config) || !payload?.subarray(0, 6).equals(XZ_MAGIC)) return false;
  // The payload ends with the decompressed size (4 bytes) after the xz stream.
  await execa("xz", ["-dc", "--single-stream"], { input: payload, stdout: { file: out } });
  return true;
}

export interface GuestBootFiles {
  kernelVersion: string;
  kernel: string;
  initrd: string;
  cmdline: string;
}

function cacheDir(kernel: InstalledKernel): string {
  const base = process.env["VNBT_TMPDIR"] ?? tmpdir();
  return join(base, "vnbt-linux-guest", `${kernel.version}-v${GUEST_HELPER_VERSION}`);
}

/** Builds the boot files into a fresh folder and renames it to `dir` (another process may win). */
async function buildBootFiles(kernel: InstalledKernel, dir: string): Promise<void> {
  const parent = dirname(dir);
  await mkdir(parent, { recursive: true });
  await chmod(parent, 0o755); // qemu (libvirt-qemu) reads the files
  const building = await mkdtemp(join(parent, `.build-${process.pid}-`));
  try {
    await extractVmlinux(kernel, join(building, "vmlinux"));
    await writeFile(join(building, "initrd.cpio"), await buildInitramfs(kernel));
    await chmod(building, 0o755);
    await rename(building, dir).catch((e: NodeJS.ErrnoException) => {
      if (!existsSync(join(dir, "initrd.cpio"))) throw e;
    });
  } finally {
    await rm(building, { recursive: true, force: true });
  }
}

let bootFiles: Promise<GuestBootFiles> | null = null;

/** The guest's kernel, initramfs and command line (built on first use, then cached). */
export function guestBootFiles(): Promise<GuestBootFiles> {
  bootFiles ??= (async () => {
    const kernel = await installedKernel();
    const dir = cacheDir(kernel);
    if (!existsSync(join(dir, "initrd.cpio"))) await buildBootFiles(kernel, dir);
    const vmlinux = join(dir, "vmlinux");
    return { kernelVersion: kernel.version, kernel: existsSync(vmlinux) ? vmlinux : kernel.bzImage, initrd: join(dir, "initrd.cpio"), cmdline: CMDLINE };
  })();
  bootFiles.catch(() => (bootFiles = null));
  return bootFiles;
}

// ---- the data disk

/** `bytes` of incompressible data (a 16 MiB random block over and over) into `path`. */
async function writeFiller(path: string, bytes: number): Promise<void> {
  const block = randomBytes(16 * MiB);
  const fh = await open(path, "w");
  try {
    for (let at = 0; at < bytes; at += block.length) await fh.write(block, 0, Math.min(block.length, bytes - at), at);
  } finally {
    await fh.close();
  }
}

/**
 * An ext4 image holding `files` (name → content), made without mounting (mkfs.ext4 -d); with
 * `fillerBytes`, also a file `filler.bin` of that much incompressible data (benchmarks).
 */
export async function makeDataDisk(path: string, format: "qcow2" | "raw", size: number, files: Record<string, string>, fillerBytes = 0): Promise<void> {
  const staging = await mkdtemp(`${path}.staging-`);
  const raw = format === "raw" ? path : `${path}.raw`;
  try {
    for (const [name, content] of Object.entries(files)) await writeFile(join(staging, name), content);
    if (fillerBytes > 0) await writeFiller(join(staging, "filler.bin"), fillerBytes);
    await execa("mkfs.ext4", ["-q", "-F", "-L", "vnbt-data", "-d", staging, raw, `${Math.floor(size / 1024)}k`]);
    if (format === "qcow2") await execa("qemu-img", ["convert", "-q", "-f", "raw", "-O", "qcow2", raw, path]);
  } finally {
    await rm(staging, { recursive: true, force: true });
    if (raw !== path) await rm(raw, { force: true });
  }
}

// ---- the guest

export interface LinuxGuestOptions {
  /** The first line of /marker on the data disk, printed as `MARKER <marker>`. */
  marker: string;
  /** The data disk's image format (default qcow2). */
  format?: "qcow2" | "raw";
  /** The data disk's size (default 32 MiB). */
  diskSize?: number;
  /** Guest memory (default 256 MiB). */
  memoryMiB?: number;
  /** Bytes of incompressible data in /filler.bin on the data disk (default none). */
  fillerBytes?: number;
}

/** Complete lines (those ended by a newline) of the console log, without line ends. */
function completeLines(text: string): string[] {
  return text.split("\n").slice(0, -1).map((l) => l.replace(/\r$/, ""));
}

/** Writes one line to a serial console's unix socket. */
function sendConsoleLine(socket: string, line: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const conn = createConnection(socket, () => conn.end(`${line}\n`));
    conn.on("error", reject);
    conn.on("close", () => resolve());
    conn.resume();
  });
}

export class LinuxGuest {
  #startedAt = 0;

  constructor(
    readonly domain: TestDomain,
    readonly boot: GuestBootFiles,
  ) {}

  /** The ext4 data disk (vda). */
  get dataDisk(): TestDisk {
    return this.domain.disk(DATA_DISK);
  }

  async start(): Promise<void> {
    this.#startedAt = performance.now();
    await this.domain.start();
  }

  /** The complete lines the serial console printed since start(). */
  async consoleLines(): Promise<string[]> {
    return completeLines(await readFile(this.domain.consoleLog, "latin1").catch(() => ""));
  }

  /**
   * Waits for a console line matching `pattern` (returns its match). Throws when the guest
   * shut off without printing it, or after `timeoutMs`, with the console's last lines.
   */
  async waitForLine(pattern: RegExp, timeoutMs = 60_000): Promise<RegExpExecArray> {
    const deadline = performance.now() + timeoutMs;
    for (let offPolls = 0; ; ) {
      const running = await this.domain.isRunning();
      for (const line of await this.consoleLines()) {
        const m = pattern.exec(line);
        if (m) return m;
      }
      offPolls = running ? 0 : offPolls + 1; // the log may trail qemu's exit for a moment
      if (offPolls > 5) throw await this.#consoleError(`shut off without printing a line matching ${pattern}`);
      if (performance.now() > deadline) throw await this.#consoleError(`printed no line matching ${pattern} in ${timeoutMs / 1000} s`);
      await sleep(50);
    }
  }

  async #consoleError(what: string): Promise<Error> {
    const tail = (await this.consoleLines()).slice(-20).join("\n");
    return new Error(`guest ${this.domain.name} ${what}; console:\n${tail}`);
  }

  /** The MARKER line's content and the seconds from start() until it was seen. */
  async waitForMarker(timeoutMs = 90_000): Promise<{ content: string; seconds: number }> {
    const [, content = ""] = await this.waitForLine(/^MARKER (.*)$/, timeoutMs);
    return { content, seconds: (performance.now() - this.#startedAt) / 1000 };
  }

  /** The tick numbers the console showed so far (`TICK N` lines), in order. */
  async ticksSeen(): Promise<number[]> {
    return (await this.consoleLines()).flatMap((l) => /^TICK (\d+)$/.exec(l)?.[1] ?? []).map(Number);
  }

  /** Asks the guest to unmount its data disk and power off; waits until shut off. Returns the last tick. */
  async stop(timeoutMs = 60_000): Promise<number> {
    await sendConsoleLine(this.domain.consoleSocket, "stop");
    const [, last] = await this.waitForLine(/^STOPPED (\d+)$/, timeoutMs);
    const deadline = performance.now() + timeoutMs;
    while (await this.domain.isRunning()) {
      if (performance.now() > deadline) throw await this.#consoleError(`still runs ${timeoutMs / 1000} s after STOPPED`);
      await sleep(50);
    }
    return Number(last);
  }

  /** Runs `fn` on a raw copy of the (shut off) data disk, or on the image itself when raw. */
  async #withRawImage<T>(fn: (raw: string) => Promise<T>): Promise<T> {
    if (await this.domain.isRunning()) throw new Error(`guest ${this.domain.name} is running: its data disk is in use`);
    const disk = this.dataDisk;
    if (disk.format === "raw") return fn(disk.path);
    const raw = join(this.domain.dir, `${DATA_DISK}-view.raw`);
    await execa("qemu-img", ["convert", "-q", "-f", disk.format, "-O", "raw", disk.path, raw]);
    try {
      return await fn(raw);
    } finally {
      await rm(raw, { force: true });
    }
  }

  /**
   * Checks the data disk (shut off) was unmounted cleanly: its superblock says clean with no
   * journal to replay (e2fsck -n skips a pending journal and still exits 0), and `e2fsck -fn`
   * passes. Resolves with e2fsck's report.
   */
  fsck(): Promise<string> {
    return this.#withRawImage(async (raw) => {
      const header = (await execa("dumpe2fs", ["-h", raw], { stderr: "ignore" })).stdout;
      const state = /^Filesystem state:\s*(.*)$/m.exec(header)?.[1]?.trim();
      const features = /^Filesystem features:\s*(.*)$/m.exec(header)?.[1] ?? "";
      if (state !== "clean" || /\bneeds_recovery\b/.test(features)) {
        throw new Error(`${this.dataDisk.path} was not unmounted cleanly (state ${state}, features: ${features})`);
      }
      const r = await execa("e2fsck", ["-fn", raw], { reject: false, all: true });
      if (r.exitCode !== 0) throw new Error(`e2fsck -fn of ${this.dataDisk.path} exited ${r.exitCode}:\n${r.all}`);
      return r.all;
    });
  }

  /** A file of the data disk (shut off), read with debugfs. */
  readFile(name: string): Promise<string> {
    return this.#withRawImage(async (raw) => {
      const r = await execa("debugfs", ["-R", `cat /${name}`, raw], { stripFinalNewline: false });
      const problems = r.stderr.split("\n").filter((l) => l.trim() && !/^debugfs \d/.test(l));
      if (problems.length > 0) throw new Error(`debugfs cat /${name} on ${this.dataDisk.path}: ${problems.join("; ")}`);
      return r.stdout;
    });
  }

  cleanup(): Promise<void> {
    return this.domain.cleanup();
  }
}

/** Defines (does not start) a guest; the caller must `cleanup()` it. */
export async function createLinuxGuest(opts: LinuxGuestOptions): Promise<LinuxGuest> {
  const boot = await guestBootFiles();
  const files = { marker: `${opts.marker}\n` };
  const domain = await createTestDomain({
    boot: { kernel: boot.kernel, initrd: boot.initrd, cmdline: boot.cmdline },
    memoryMiB: opts.memoryMiB ?? 256,
    acpi: true,
    serialConsole: true,
    disks: [{ bus: "virtio", format: opts.format ?? "qcow2", size: opts.diskSize ?? 32 * MiB, makeImage: (path, format, size) => makeDataDisk(path, format, size, files, opts.fillerBytes ?? 0) }],
  });
  return new LinuxGuest(domain, boot);
}

/** Defines a guest and registers its cleanup with `t.after`. */
export async function linuxGuest(t: AfterHook, opts: LinuxGuestOptions): Promise<LinuxGuest> {
  const guest = await createLinuxGuest(opts);
  t.after(() => guest.cleanup());
  return guest;
}
