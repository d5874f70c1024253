/**
 * nbdkit as a child process in front of our NBD helper (which serves the backup chain on a
 * unix socket): nbdkit's `nbd` plugin connects to the helper, the `cow` filter takes every
 * write into a temporary overlay (so the backup files are never written), and nbdkit listens
 * on the TCP address and port of `-l`/`-p` under export name `-e`.
 *
 *   nbdkit --foreground --exit-with-parent --pidfile <tmp>/nbdkit.pid
 *          -i <addr> -p <port> -e <export> -t <threads> [-r] [-v]
 *          --filter=blocksize --filter=cow nbd socket=<tmp>/chain.sock
 *          maxdata=32M cow-block-size=<bs>
 *
 * `-b` (the original: the blocksize filter's `maxlen`) is the cow filter's block size here.
 * The original needed small requests because its Python plugin could not read across frame
 * boundaries; in nbdkit 1.32 `maxlen=4096` also cuts every read into 4 KiB pieces, each of
 * which the cow filter then widens to a whole 64 KiB cow block. Our helper reads any range,
 * so reads pass whole (the blocksize filter only keeps them within the helper's 32 MiB
 * limit), and `-b` sets the granularity at which nbdkit reads from the helper and keeps
 * written blocks: a 4 KiB guest read asks the helper for 4 KiB, not 64 KiB.
 *
 * The overlay lives in `TMPDIR` = the map's temp directory (nbdkit deletes it on exit). With
 * `--exit-with-parent` nbdkit also goes away if our process is killed.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { constants as fsConstants } from "node:fs";
import { access, open, readFile } from "node:fs/promises";
import { delimiter, join } from "node:path";

export interface NbdkitConfig {
  /** Unix socket of the helper NBD server. */
  helperSocket: string;
  /** Export name on the helper (default: nbdkit's "" → the helper's default export). */
  helperExport?: string;
  exportName: string;
  listenAddress: string;
  port: string;
  threads: string;
  /** cow filter block size (power of two ≥ 4096, see cowBlockSize()). */
  cowBlockSize: number;
  /** Largest read/write passed to the helper (blocksize filter maxdata; default 32M). */
  maxdata?: string;
  readOnly: boolean;
  /** nbdkit `-v` (debug messages into the log). */
  verbose: boolean;
  /** nbdkit's stdout/stderr go here. */
  logFile: string;
  pidFile: string;
  /** TMPDIR for nbdkit: where the cow overlay is created. */
  overlayDir: string;
  /** The nbdkit binary (default: `nbdkit` from PATH). */
  binary?: string;
}

export class NbdkitError extends Error {}

/** The nbdkit command line (without the binary). */
export function nbdkitArgs(c: NbdkitConfig): string[] {
  const args = [
    "--foreground",
    "--exit-with-parent",
    "--pidfile",
    c.pidFile,
    "-i",
    c.listenAddress,
    "-p",
    c.port,
    "-e",
    c.exportName,
    "-t",
    c.threads,
  ];
  if (c.readOnly) args.push("-r");
  if (c.verbose) args.push("-v");
  args.push("--filter=blocksize", "--filter=cow", "nbd", `socket=${c.helperSocket}`);
  if (c.helperExport !== undefined) args.push(`export=${c.helperExport}`);
  args.push(`maxdata=${c.maxdata ?? "32M"}`, `cow-block-size=${c.cowBlockSize}`);
  return args;
}

/** Largest cow bitmap we accept: 2 bits per block, so 2^25 blocks are 8 MiB. */
const MAX_COW_BLOCKS = 2 ** 25;

/**
 * The cow block size for `-b` and a disk: `-b` rounded up to a power of two, at least 4 KiB
 * (nbdkit's minimum), and large enough that the overlay bitmap of a huge disk stays small.
 * Throws for a `-b` that is not a positive integer (with an optional k/M suffix).
 */
export function cowBlockSize(blocksize: string, diskSize: number): number {
  const m = /^(\d+)([kKmM]?)$/.exec(blocksize.trim());
  const n = m ? Number(m[1]) * (m[2] ? (m[2].toLowerCase() === "k" ? 1024 : 1024 * 1024) : 1) : NaN;
  if (!(n > 0) || !Number.isSafeInteger(n)) throw new NbdkitError(`invalid blocksize [${blocksize}]`);
  let bs = 4096;
  while (bs < n || diskSize / bs > MAX_COW_BLOCKS) bs *= 2;
  return bs;
}

/** `which`: the first executable `name` on PATH, or null. */
export async function which(name: string, path = process.env["PATH"] ?? "/usr/bin:/bin"): Promise<string | null> {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      await access(p, fsConstants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return null;
}

export interface NbdkitInstall {
  binary: string;
  plugindir: string;
  filterdir: string;
}

/** Where nbdkit keeps its plugins and filters (`nbdkit --dump-config`). */
export async function nbdkitInstall(binary: string): Promise<NbdkitInstall> {
  const out = await new Promise<string>((resolve, reject) => {
    const p = spawn(binary, ["--dump-config"], { stdio: ["ignore", "pipe", "ignore"] });
    let text = "";
    p.stdout.setEncoding("utf8").on("data", (d: string) => (text += d));
    p.on("error", reject);
    p.on("close", (code) => (code === 0 ? resolve(text) : reject(new NbdkitError(`${binary} --dump-config exited with ${code}`))));
  });
  const value = (key: string) => new RegExp(`^${key}=(.*)$`, "m").exec(out)?.[1] ?? "";
  return { binary, plugindir: value("plugindir"), filterdir: value("filterdir") };
}

/** The plugin and filters we need, by name, that this nbdkit lacks. */
export async function missingModules(install: NbdkitInstall): Promise<string[]> {
  const need = [
    ["nbd", join(install.plugindir, "nbdkit-nbd-plugin.so")],
    ["cow", join(install.filterdir, "nbdkit-cow-filter.so")],
    ["blocksize", join(install.filterdir, "nbdkit-blocksize-filter.so")],
  ];
  const missing: string[] = [];
  for (const [name, path] of need) {
    try {
      await access(path!, fsConstants.R_OK);
    } catch {
      missing.push(name!);
    }
  }
  return missing;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class NbdkitProcess {
  private constructor(
    private readonly child: ChildProcess,
    readonly config: NbdkitConfig,
    /** Settles when nbdkit has exited (for whatever reason). */
    readonly exited: Promise<ExitInfo>,
  ) {}

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /**
   * Starts nbdkit and waits until it listens (it writes its pid file after binding the
   * port). Fails with the end of nbdkit's log if it exits first or takes too long.
   */
  static async start(config: NbdkitConfig, opts: { timeoutMs?: number } = {}): Promise<NbdkitProcess> {
    const log = await open(config.logFile, "a");
    let child: ChildProcess;
    try {
      child = spawn(config.binary ?? "nbdkit", nbdkitArgs(config), {
        stdio: ["ignore", log.fd, log.fd],
        env: { ...process.env, TMPDIR: config.overlayDir },
      });
    } finally {
      await log.close();
    }
    const exited = new Promise<ExitInfo>((resolve) => {
      child.once("exit", (code, signal) => resolve({ code, signal }));
      child.once("error", () => resolve({ code: -1, signal: null }));
    });
    const proc = new NbdkitProcess(child, config, exited);
    const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
    let gone: ExitInfo | null = null;
    void exited.then((e) => (gone = e));
    for (;;) {
      if (gone) throw new NbdkitError(`nbdkit exited (${describeExit(gone)}): ${await tail(config.logFile)}`);
      try {
        const pid = Number((await readFile(config.pidFile, "utf8")).trim());
        if (pid === child.pid) return proc;
      } catch {
        /* not yet */
      }
      if (Date.now() > deadline) {
        await proc.stop();
        throw new NbdkitError(`nbdkit did not start listening within ${(opts.timeoutMs ?? 30_000) / 1000} s: ${await tail(config.logFile)}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when nbdkit is gone. */
  async stop(graceMs = 5000): Promise<ExitInfo> {
    if (this.running) this.child.kill("SIGTERM");
    const timer = setTimeout(() => {
      if (this.running) this.child.kill("SIGKILL");
    }, graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

export function describeExit(e: ExitInfo): string {
  return e.signal ? `signal ${e.signal}` : `exit code ${e.code}`;
}

/** The last lines of a log file, on one line (for error messages). */
export async function tail(path: string, lines = 5): Promise<string> {
  try {
    const text = (await readFile(path, "utf8")).trim();
    return text ? text.split("\n").slice(-lines).join(" | ") : "(no output)";
  } catch {
    return "(no log)";
  }
}
