/**
 * One backup of a domain at a time (docs/behaviour.md, "Per-domain lock"): a lock file per
 * libvirt URI and domain, held with flock(2) for the whole run. The kernel releases it when the
 * owner ends in any way (also SIGKILL), so a lock left by a dead run is simply free again; the
 * file holds the owner's pid, start and target for the message of a run that finds it taken.
 */
import { createHash } from "node:crypto";
import { mkdir, open, type FileHandle } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { native } from "../native/index.js";

export interface LockOwner {
  pid: number;
  started: string;
  output: string;
}

/** Where the lock files live: `$VIRTNBDBACKUP_LOCK_DIR`, `/run/lock/virtnbdbackup` as root, else per user in the temp dir. */
export function lockDirectory(env: NodeJS.ProcessEnv = process.env): string {
  if (env.VIRTNBDBACKUP_LOCK_DIR) return env.VIRTNBDBACKUP_LOCK_DIR;
  if (process.getuid?.() === 0) return "/run/lock/virtnbdbackup";
  return join(env.XDG_RUNTIME_DIR || tmpdir(), `virtnbdbackup-${process.getuid?.() ?? "user"}`);
}

/** `<domain>.<hash of uri and domain>.lock`: readable, and distinct for the same name on other hypervisors. */
export function lockFileName(uri: string, domain: string): string {
  const safe = domain.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 100);
  const hash = createHash("sha256").update(`${uri}\0${domain}`).digest("hex").slice(0, 12);
  return `${safe}.${hash}.lock`;
}

/** ` (pid N, started T, into [target])` for messages about a held lock; "" when its file said nothing readable. */
export function describeLockOwner(o: LockOwner | null): string {
  return o ? ` (pid ${o.pid}, started ${o.started}, into [${o.output}])` : "";
}

export class DomainLock {
  private constructor(
    readonly path: string,
    private file: FileHandle | null,
  ) {}

  /** The lock, or the owner that holds it (null fields when its file says nothing readable). */
  static async acquire(dir: string, uri: string, domain: string, me: LockOwner): Promise<DomainLock | { heldBy: LockOwner | null }> {
    await mkdir(dir, { recursive: true, mode: 0o755 });
    const path = join(dir, lockFileName(uri, domain));
    const file = await open(path, "a+", 0o644);
    let taken: boolean;
    try {
      taken = native.tryLockExclusive(file.fd);
    } catch (e) {
      await file.close();
      throw e;
    }
    if (!taken) {
      const heldBy = await readOwner(file);
      await file.close();
      return { heldBy };
    }
    await file.truncate(0);
    await file.write(JSON.stringify(me), 0);
    await file.sync();
    return new DomainLock(path, file);
  }

  /** Ends the lock (process exit does too). The file stays: removing it would race with a new owner. */
  async release(): Promise<void> {
    const f = this.file;
    this.file = null;
    await f?.close();
  }
}

async function readOwner(file: FileHandle): Promise<LockOwner | null> {
  try {
    const { buffer, bytesRead } = await file.read({ buffer: Buffer.alloc(4096), position: 0 });
    const o = JSON.parse(buffer.subarray(0, bytesRead).toString("utf8")) as Partial<LockOwner>;
    return typeof o.pid === "number" ? { pid: o.pid, started: String(o.started ?? "?"), output: String(o.output ?? "?") } : null;
  } catch {
    return null;
  }
}
