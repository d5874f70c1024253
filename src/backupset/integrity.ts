/** The `.integrity` record of a data file in a set, as a checker (null when the set has none). */
import { IntegrityChecker, parseIntegrity } from "../format/integrity.js";
import { integrityFileName } from "./layout.js";
import type { BackupSetSource } from "../storage/set-source.js";

/**
 * `skipPayloadSums`: payload sums are not checked (lz4 payloads, covered by lz4's own
 * checksums; or a caller that checks the whole file against its `.chksum`).
 */
export async function loadIntegrity(set: BackupSetSource, dataFile: string, skipPayloadSums: boolean): Promise<IntegrityChecker | null> {
  const name = integrityFileName(dataFile);
  if (!(await set.list()).some((f) => f.name === name)) return null;
  const shown = set.shownName(name);
  return new IntegrityChecker(parseIntegrity((await set.readFile(name)).toString("latin1"), shown), set.shownName(dataFile), !skipPayloadSums);
}
