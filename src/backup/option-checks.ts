/** Option combinations a backup refuses before it touches anything (the original's messages). */
import { isChainName } from "../backupset/layout.js";
import type { BackupArgs } from "./options.js";
import { isObjectPath, shownPath } from "../storage/object-path.js";

/** The error line for a combination of options that cannot run, or null. */
export function optionConflict(args: Pick<BackupArgs, "output" | "type" | "raw" | "level" | "compress"> & Partial<Pick<BackupArgs, "chain" | "check">>): string | null {
  const stdoutMode = args.output === "-";
  if (args.chain && !isChainName(args.chain)) return `Invalid chain name [${args.chain}]: use letters, digits, '_' and '-' (not only digits).`;
  if (args.check && stdoutMode) return "Option --check needs a target directory, not stdout.";
  if (args.compress !== false && args.type === "raw") return "Compression not supported with raw output.";
  if (stdoutMode && args.type === "raw") return "Output type raw not supported to stdout.";
  if (stdoutMode && args.raw) return "Saving raw images to stdout is not supported.";
  if (isObjectPath(args.output) && (args.type === "raw" || args.raw)) return `Raw images (${args.raw ? "--raw" : "-t raw"}) need a directory target: [${shownPath(args.output)}] holds stream files only.`;
  if (args.type === "raw" && (args.level === "inc" || args.level === "diff")) {
    return "Stream format raw does not support incremental or differential backup.";
  }
  return null;
}
