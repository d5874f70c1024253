/** qemu-img on the host: image info for `qcow.json`, image creation for restore. */
import type { Host } from "../host/host.js";

export class QemuImgError extends Error {}

/** `qemu-img info <path> --output json --force-share`, stripped (the set's qcow.json text). */
export async function qemuImgInfoJson(host: Host, path: string): Promise<string> {
  const r = await host.run("qemu-img", ["info", path, "--output", "json", "--force-share"]);
  if (r.exitCode !== 0) throw new QemuImgError(`qemu-img info [${path}] failed: ${r.stderr.trim() || `exit ${r.exitCode}`}`);
  return r.stdout.trim();
}

export interface QcowSettings {
  compat?: string;
  clusterSize?: number;
  lazyRefcounts?: boolean;
  compressionType?: string;
  dataFile?: string;
  dataFileRaw?: boolean;
}

/** The image settings restore reuses, from a saved `qemu-img info` JSON. */
export function qcowSettingsFromInfo(json: string): QcowSettings {
  const info = JSON.parse(json) as Record<string, unknown>;
  const data = ((info["format-specific"] as Record<string, unknown> | undefined)?.["data"] ?? {}) as Record<string, unknown>;
  const s: QcowSettings = {};
  if (typeof data["compat"] === "string") s.compat = data["compat"];
  if (typeof info["cluster-size"] === "number") s.clusterSize = info["cluster-size"];
  if (data["lazy-refcounts"] === true) s.lazyRefcounts = true;
  if (typeof data["compression-type"] === "string") s.compressionType = data["compression-type"];
  if (typeof data["data-file"] === "string") s.dataFile = data["data-file"];
  if (data["data-file-raw"] === true) s.dataFileRaw = true;
  return s;
}

export interface CreateImageOptions {
  format: string;
  size: number;
  preallocate?: boolean;
  settings?: QcowSettings;
}

/** The `qemu-img create` arguments (docs/behaviour.md, "Image creation", without the dangling `-o` quirk). */
export function createImageArgs(target: string, o: CreateImageOptions): string[] {
  const args = ["create", "-f", o.format, target, "-o", `size=${o.size}`];
  if (o.preallocate) args.push("-o", "preallocation=full");
  const s = o.settings ?? {};
  if (s.compat) args.push("-o", `compat=${s.compat}`);
  if (s.clusterSize) args.push("-o", `cluster_size=${s.clusterSize}`);
  if (s.lazyRefcounts) args.push("-o", "lazy_refcounts=on");
  if (s.compressionType) args.push("-o", `compression_type=${s.compressionType}`);
  if (s.dataFile) args.push("-o", `data_file=${s.dataFile}`);
  if (s.dataFileRaw) args.push("-o", "data_file_raw=true");
  return args;
}

export async function createImage(host: Host, target: string, o: CreateImageOptions): Promise<void> {
  const r = await host.run("qemu-img", createImageArgs(target, o));
  if (r.exitCode !== 0) throw new QemuImgError(`qemu-img create [${target}] failed: ${r.stderr.trim() || `exit ${r.exitCode}`}`);
}

/**
 * The `json:` backing name of a raw image read from an NBD export on a unix socket (qemu's
 * pseudo-protocol; libvirt parses it back into `<backingStore type='network'>`).
 */
export function nbdBackingName(socket: string, exportName: string): string {
  return `json:${JSON.stringify({ driver: "raw", file: { driver: "nbd", server: { type: "unix", path: socket }, export: exportName } })}`;
}

/** A qcow2 image over `backing` (raw), created without opening the backing (`-u`: its server may not run yet). */
export async function createOverlayImage(host: Host, target: string, backing: string, o: CreateImageOptions): Promise<void> {
  const args = [...createImageArgs(target, { ...o, format: "qcow2", preallocate: false }), "-u", "-F", "raw", "-b", backing];
  const r = await host.run("qemu-img", args);
  if (r.exitCode !== 0) throw new QemuImgError(`qemu-img create [${target}] failed: ${r.stderr.trim() || `exit ${r.exitCode}`}`);
}

/** The image's format and backing file name as its header says (`qemu-img info -U`, backing not opened). */
export async function imageHeader(host: Host, path: string): Promise<{ format: string; backing: string | null }> {
  const r = await host.run("qemu-img", ["info", "--output", "json", "--force-share", path]);
  if (r.exitCode !== 0) throw new QemuImgError(`qemu-img info [${path}] failed: ${r.stderr.trim() || `exit ${r.exitCode}`}`);
  const info = JSON.parse(r.stdout) as { format?: string; "backing-filename"?: string; "full-backing-filename"?: string };
  return { format: info.format ?? "", backing: info["backing-filename"] ?? null };
}
