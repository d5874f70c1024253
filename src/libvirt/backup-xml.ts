/**
 * Builders for the XML documents passed to virDomainBackupBegin, byte for byte as the original
 * writes them (docs/behaviour.md, "Online backup job": double-quoted attributes, 2-space indent, no XML declaration,
 * no trailing newline), and a reader for libvirt's checkpoint XML (names, parent, disk sizes).
 */
import { randomInt } from "node:crypto";
import { attr, childElement, childElements, parseXml, textOf, XmlError } from "./domain-xml.js";

/** Where libvirt's NBD server listens during a pull-mode job. */
export type BackupServer =
  /** Local: a unix socket on the hypervisor host. */
  | { transport: "unix"; socket: string }
  /** Remote: TCP on `name:port`, TLS on or off. */
  | { tls: boolean; name: string; port: number | string };

export interface BackupDisk {
  /** Disk target, e.g. "sda": also the NBD export name. */
  name: string;
  /** Scratch file on the hypervisor host. */
  scratchFile: string;
}

export interface BackupXmlOptions {
  server: BackupServer;
  /** Every disk of the job, in order. */
  disks: readonly BackupDisk[];
  /** Parent checkpoint for inc/diff; empty/undefined for full/copy (no `<incremental>`). */
  incremental?: string | null;
}

export interface CheckpointXmlOptions {
  /** New checkpoint name, e.g. "virtnbdbackup.2". */
  name: string;
  /** Parent checkpoint; `<parent>` is written only when non-empty. */
  parent?: string | null;
  /** Disk targets in the checkpoint (selected disks whose format is not raw). */
  disks: readonly string[];
  /** Defaults to "Backup checkpoint". */
  description?: string;
}

/** Escapes an attribute value the way lxml does. */
export function escapeAttribute(value: string): string {
  return value
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/\n/g, "&#10;")
    .replace(/\r/g, "&#13;")
    .replace(/\t/g, "&#9;");
}

/** Escapes element text the way lxml does. */
export function escapeText(value: string): string {
  return value.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/\r/g, "&#13;");
}

function attrs(pairs: ReadonlyArray<readonly [string, string]>): string {
  return pairs.map(([k, v]) => ` ${k}="${escapeAttribute(v)}"`).join("");
}

function serverElement(server: BackupServer): string {
  if ("transport" in server) {
    return `<server${attrs([
      ["transport", server.transport],
      ["socket", server.socket],
    ])}/>`;
  }
  return `<server${attrs([
    ["tls", server.tls ? "yes" : "no"],
    ["name", server.name],
    ["port", String(server.port)],
  ])}/>`;
}

/**
 * The pull-mode backup job XML:
 *
 *   <domainbackup mode="pull">
 *     <server transport="unix" socket="…"/>
 *     <disks>
 *       <disk name="sda">
 *         <scratch file="…"/>
 *       </disk>
 *     </disks>
 *     <incremental>virtnbdbackup.1</incremental>
 *   </domainbackup>
 */
export function buildBackupXml(options: BackupXmlOptions): string {
  const lines = ['<domainbackup mode="pull">', `  ${serverElement(options.server)}`];
  if (options.disks.length === 0) {
    lines.push("  <disks/>");
  } else {
    lines.push("  <disks>");
    for (const d of options.disks) {
      lines.push(`    <disk${attrs([["name", d.name]])}>`);
      lines.push(`      <scratch${attrs([["file", d.scratchFile]])}/>`);
      lines.push("    </disk>");
    }
    lines.push("  </disks>");
  }
  if (options.incremental) lines.push(`  <incremental>${escapeText(options.incremental)}</incremental>`);
  lines.push("</domainbackup>");
  return lines.join("\n");
}

/**
 * The checkpoint XML passed next to the job XML (full/inc only):
 *
 *   <domaincheckpoint>
 *     <description>Backup checkpoint</description>
 *     <name>virtnbdbackup.2</name>
 *     <parent>
 *       <name>virtnbdbackup.1</name>
 *     </parent>
 *     <disks>
 *       <disk name="sda"/>
 *     </disks>
 *   </domaincheckpoint>
 */
export function buildCheckpointXml(options: CheckpointXmlOptions): string {
  const lines = [
    "<domaincheckpoint>",
    `  <description>${escapeText(options.description ?? "Backup checkpoint")}</description>`,
    `  <name>${escapeText(options.name)}</name>`,
  ];
  if (options.parent) {
    lines.push("  <parent>", `    <name>${escapeText(options.parent)}</name>`, "  </parent>");
  }
  if (options.disks.length === 0) {
    lines.push("  <disks/>");
  } else {
    lines.push("  <disks>");
    for (const d of options.disks) lines.push(`    <disk${attrs([["name", d]])}/>`);
    lines.push("  </disks>");
  }
  lines.push("</domaincheckpoint>");
  return lines.join("\n");
}

const SCRATCH_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/** `<scratchDir>/backup.<5 random [A-Z0-9]>.<dev>` (docs/behaviour.md, "Online backup job"). */
export function scratchFilePath(scratchDir: string, dev: string, random: (n: number) => number = randomInt): string {
  let id = "";
  for (let i = 0; i < 5; i++) id += SCRATCH_CHARS[random(SCRATCH_CHARS.length)];
  return `${scratchDir.replace(/\/+$/, "")}/backup.${id}.${dev}`;
}

/** One `disks/disk` of a checkpoint XML. */
export interface CheckpointDiskInfo {
  name: string;
  /** "bitmap" or "no". */
  checkpoint: string | null;
  bitmap: string | null;
  /** Bytes changed since the checkpoint; only with VIR_DOMAIN_CHECKPOINT_XML_SIZE. */
  size: number | null;
}

export interface CheckpointInfo {
  name: string;
  /** Parent checkpoint name, or null for a root. */
  parent: string | null;
  description: string | null;
  creationTime: number | null;
  disks: CheckpointDiskInfo[];
}

/** Reads libvirt's `<domaincheckpoint>` XML (top-level elements only, not the embedded `<domain>`). */
export function parseCheckpointXml(xml: string): CheckpointInfo {
  const root = parseXml(xml, "checkpoint XML").documentElement!;
  if (root.nodeName !== "domaincheckpoint") {
    throw new XmlError(`not a checkpoint XML document: root element <${root.nodeName}>`);
  }
  const name = textOf(childElement(root, "name"));
  if (!name) throw new XmlError("checkpoint XML has no <name>");
  const parentEl = childElement(root, "parent");
  const created = textOf(childElement(root, "creationTime"));
  const disksEl = childElement(root, "disks");
  return {
    name: name.trim(),
    parent: parentEl ? (textOf(childElement(parentEl, "name"))?.trim() ?? null) : null,
    description: textOf(childElement(root, "description")),
    creationTime: created === null ? null : Number(created),
    disks: disksEl
      ? childElements(disksEl, "disk").map((d) => {
          const size = attr(d, "size");
          return {
            name: attr(d, "name") ?? "",
            checkpoint: attr(d, "checkpoint"),
            bitmap: attr(d, "bitmap"),
            size: size === null ? null : Number(size),
          };
        })
      : [],
  };
}
