/** Loader/nvram/kernel/initrd files back to their original paths (never over an existing file). */
import type { DomainXml } from "../libvirt/domain-xml.js";
import type { Host } from "../host/host.js";
import type { BackupSetSource, SetFile } from "../storage/set-source.js";

export interface BootLog {
  info(m: string): void;
  warning(m: string): void;
}

export async function restoreBootFiles(domain: DomainXml, set: BackupSetSource, files: SetFile[], host: Host, log: BootLog): Promise<void> {
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
    if (await host.exists(original)) {
      log.info(`File [${original}] already exists, skipping.`);
      continue;
    }
    log.info(`Restoring configured ${kind} file [${newest.name}] to [${original}]`);
    await host.mkdir(original.slice(0, original.lastIndexOf("/")) || "/");
    await host.writeFile(original, await set.readFile(newest.name));
  }
}
