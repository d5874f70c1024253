/**
 * Loader/nvram/kernel/initrd files of a restore (docs/behaviour.md, "Boot files"). As the
 * original: back to their original paths, never over an existing file. A restored copy (`-c`,
 * `-D`) gets its own NVRAM instead, and its own loader where that is not a shared system file:
 * written next to its disks under the new domain's name, and its config pointed at them, so it
 * never runs on (or deletes, `virsh undefine --nvram`) the original VM's NVRAM.
 */
import { join } from "node:path";
import type { DomainXml } from "../libvirt/domain-xml.js";
import type { Host } from "../host/host.js";
import type { BackupSetSource, SetFile } from "../storage/set-source.js";

export interface BootLog {
  info(m: string): void;
  warning(m: string): void;
  error(m: string): void;
}

type BootKind = "loader" | "nvram" | "kernel" | "initrd";

/** Firmware installed by packages (OVMF, SeaBIOS, …): shared by every VM, never copied. */
const isSystemFile = (path: string): boolean => /^\/(usr|lib|lib64|opt)\//.test(path);

/** Where a restored copy's own boot file goes (`copyDir`: its output directory), or null to use the original path. */
function ownPath(kind: BootKind, original: string, domain: DomainXml, copyDir: string | null): string | null {
  if (copyDir === null) return null;
  if (kind === "nvram") return join(copyDir, `${domain.name}_VARS.fd`);
  if (kind === "loader" && !isSystemFile(original)) return join(copyDir, `${domain.name}_${original.slice(original.lastIndexOf("/") + 1)}`);
  return null;
}

/** `copyDir`: a restored copy's output directory (`-c`/`-D`), null for a restore in place. */
export async function restoreBootFiles(domain: DomainXml, set: BackupSetSource, files: SetFile[], host: Host, log: BootLog, copyDir: string | null = null): Promise<void> {
  const paths = domain.osPaths();
  for (const kind of ["loader", "nvram", "kernel", "initrd"] as const) {
    const original = paths[kind];
    if (!original) continue;
    const base = original.slice(original.lastIndexOf("/") + 1);
    const candidates = files.filter((f) => !f.name.includes("/") && f.name.includes(base)).sort((a, b) => a.mtimeMs - b.mtimeMs);
    const newest = candidates.at(-1);
    if (!newest) {
      log.warning(`No backup of ${kind} file [${original}] found in backup set.`);
      continue;
    }
    const own = ownPath(kind, original, domain, copyDir);
    const target = own ?? original;
    if (await host.exists(target)) {
      if (own) log.error(`File [${own}] already exists: the restored VM's own ${kind} is not written over it.`);
      else log.info(`File [${original}] already exists, skipping.`);
      continue;
    }
    log.info(`Restoring configured ${kind} file [${newest.name}] to [${target}]`);
    await host.mkdir(target.slice(0, target.lastIndexOf("/")) || "/");
    await host.writeFile(target, await set.readFile(newest.name));
    if (own) domain.setOsPath(kind, own);
  }
}
