/**
 * An emulated TPM's state back for the restored domain (docs/behaviour.md, "TPM state"), so a
 * guest that seals keys to its TPM (BitLocker, measured boot) comes back without a recovery
 * prompt: into libvirt's swtpm folder of the domain's uuid (the defined copy's with `-D`, the
 * original's for a restore in place, never over an existing state), owned by the swtpm user.
 * A copy that is not defined (`-c` alone) has no uuid yet: the file goes next to its disks.
 */
import { join } from "node:path";
import type { Host } from "../host/host.js";
import type { DomainXml } from "../libvirt/domain-xml.js";
import { SWTPM_STATE_ROOT, SWTPM_USER, tpmStateDir, tpmStateFile } from "../libvirt/tpm-state.js";
import type { BackupSetSource, SetFile } from "../storage/set-source.js";
import type { BootLog } from "./boot-files.js";

/** Where the state goes: the uuid libvirt gave or kept the domain, or the copy's output directory. */
export type TpmTarget = { uuid: string } | { copyDir: string };

export async function restoreTpmState(domain: DomainXml, set: BackupSetSource, files: SetFile[], host: Host, log: BootLog, target: TpmTarget): Promise<void> {
  for (const tpm of domain.tpms()) {
    const file = tpmStateFile(tpm);
    if (!file) continue;
    const newest = files.filter((f) => !f.name.includes("/") && (f.name.startsWith(`${file.name}.`) || f.name === file.name)).sort((a, b) => a.mtimeMs - b.mtimeMs).at(-1);
    if (!newest) {
      log.warning(`No TPM state [${file.name}] found in backup set: the restored domain starts with a new TPM.`);
      continue;
    }
    const data = await set.readFile(newest.name);
    if ("copyDir" in target) {
      const path = join(target.copyDir, `${domain.name}_${file.name}`);
      await writeNew(host, path, data, log);
      log.info(`TPM state placed in [${path}]: copy it to ${SWTPM_STATE_ROOT}/<uuid>/${file.folder}/${file.name} (owner ${SWTPM_USER}) once the domain is defined.`);
      continue;
    }
    const dir = tpmStateDir(target.uuid, file);
    const path = `${dir}/${file.name}`;
    if (await host.exists(path)) {
      log.info(`TPM state [${path}] already exists, skipping.`);
      continue;
    }
    log.info(`Restoring TPM state [${newest.name}] to [${path}]`);
    await host.mkdir(dir);
    await host.writeFile(path, data);
    await ownBySwtpm(host, `${SWTPM_STATE_ROOT}/${target.uuid}`, dir, path, log);
  }
}

async function writeNew(host: Host, path: string, data: Buffer, log: BootLog): Promise<void> {
  if (await host.exists(path)) {
    log.error(`File [${path}] already exists: the TPM state is not written over it.`);
    return;
  }
  await host.writeFile(path, data);
}

/** swtpm runs as the swtpm user: its state folder and file must be its own (0700 / 0600). */
async function ownBySwtpm(host: Host, root: string, dir: string, path: string, log: BootLog): Promise<void> {
  const steps: [string, string[]][] = [
    ["chown", ["-R", `${SWTPM_USER}:${SWTPM_USER}`, root]],
    ["chmod", ["0700", dir]],
    ["chmod", ["0600", path]],
  ];
  for (const [cmd, args] of steps) {
    const r = await host.run(cmd, args);
    if (r.exitCode !== 0) log.warning(`${cmd} ${args.join(" ")} failed: ${r.stderr.trim()}: swtpm may not be able to read the restored state.`);
  }
}
