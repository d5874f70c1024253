/**
 * Where libvirt keeps an emulated TPM's state (docs/behaviour.md, "TPM state"): swtpm runs as
 * `swtpm_user` (Debian: tss) with its state in `/var/lib/libvirt/swtpm/<domain uuid>/tpm2/`
 * (`tpm1.2/` for TPM 1.2), one file `tpm2-00.permall` (`tpm-00.permall`) holding the seeds,
 * keys and NV data (qemu:///system; session URIs keep it under the user's home).
 */
import type { TpmInfo } from "./domain-xml.js";

export const SWTPM_STATE_ROOT = "/var/lib/libvirt/swtpm";
/** The user libvirt runs swtpm as unless qemu.conf says otherwise. */
export const SWTPM_USER = "tss";

export interface TpmStateFile {
  /** `tpm2` or `tpm1.2`: the folder below the domain's uuid. */
  folder: string;
  /** `tpm2-00.permall` or `tpm-00.permall`. */
  name: string;
}

/** The state file of an emulated TPM, or null for other backends (passthrough, external). */
export function tpmStateFile(tpm: TpmInfo): TpmStateFile | null {
  if (tpm.backendType !== "emulator") return null;
  return tpm.backendVersion === "1.2" ? { folder: "tpm1.2", name: "tpm-00.permall" } : { folder: "tpm2", name: "tpm2-00.permall" };
}

/** `/var/lib/libvirt/swtpm/<uuid>/<folder>` */
export function tpmStateDir(uuid: string, file: TpmStateFile): string {
  return `${SWTPM_STATE_ROOT}/${uuid}/${file.folder}`;
}
