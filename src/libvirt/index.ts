/**
 * Typed libvirt API over the native binding (src/native/libvirt).
 *
 *   const conn = await Connection.open("qemu:///system");          // or { user, password }
 *   const dom = await conn.lookupDomain("vm1");
 *   const xml = DomainXml.parse(await dom.xmlDesc());
 *   await dom.backupBegin(buildBackupXml({...}), buildCheckpointXml({...}));
 *   await dom.abortJob();
 *   await conn.close();
 *
 * Every call runs off the event loop and rejects with a LibvirtError (code/domain/message).
 */
export * from "./constants.js";
export { LibvirtError, isLibvirtError, errorCodeName } from "./errors.js";
export {
  Connection,
  closeReasonName,
  formatVersion,
  localLibVersion,
  type CloseListener,
  type OpenOptions,
} from "./connection.js";
export { Domain, type BlockInfo, type BlockJobInfo, type DomainState, type JobInfo, type JobStats } from "./domain.js";
export { Checkpoint } from "./checkpoint.js";
export { StoragePool, StorageVol } from "./storage.js";
export {
  DomainXml,
  DomainDisk,
  XmlError,
  QEMU_NAMESPACE,
  parseXml,
  serializeXml,
  childElement,
  childElements,
  elementAt,
  attr,
  textOf,
  type BackingStore,
  type DataStore,
  type DiskSource,
  type DiskSourceHost,
  type TpmInfo,
} from "./domain-xml.js";
export {
  buildBackupXml,
  buildCheckpointXml,
  parseCheckpointXml,
  scratchFilePath,
  escapeAttribute,
  escapeText,
  type BackupDisk,
  type BackupServer,
  type BackupXmlOptions,
  type CheckpointDiskInfo,
  type CheckpointInfo,
  type CheckpointXmlOptions,
} from "./backup-xml.js";
export type { LvTypedParams } from "../native/index.js";
