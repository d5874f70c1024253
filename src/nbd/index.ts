/** Public API of the NBD layer: client, connect helper, extent queries, server and backends. */
export { DEFAULT_REQUEST_SIZE, NbdClient, type BlockStatusReply, type ClientOptions, type WriteOptions, type ZeroOptions } from "./client.js";
export { DEFAULT_MAX_BYTES_IN_FLIGHT, DEFAULT_MAX_REQUESTS_IN_FLIGHT } from "./connection.js";
export { connect, resolveConnectOptions, type ConnectOptions } from "./connect.js";
export type { BasicInfo, ExportInfo } from "./handshake.js";
export { listExports, listMetaContexts, queryExportInfo, type QueryOptions } from "./query.js";
export {
  backupExtents,
  backupMetaContexts,
  collectBackupExtents,
  contextExtents,
  ExtentList,
  ExtentMerger,
  summarizeBackupExtents,
  walkBlockStatus,
  type BackupExtent,
  type BackupExtentOptions,
  type ExtentSource,
  type ExtentTotals,
  type RawExtent,
  type WalkRange,
} from "./extents.js";
export {
  NbdBackendError,
  NbdConnectionError,
  NbdConnectAborted,
  NbdConnectionTimeout,
  NbdError,
  NbdHandshakeError,
  NbdProtocolError,
  NbdRequestError,
} from "./errors.js";
export { NbdServer, type ServerOptions } from "./server.js";
export { type BackendExtent, type NbdBackend, type ReadView, type ZeroFlags } from "./backend.js";
export { MemoryBackend } from "./memory-backend.js";
export { FileBackend } from "./file-backend.js";
export { formatNbdUri, parseNbdUri, DEFAULT_NBD_PORT, NbdUriError, type NbdTarget, type NbdUri } from "./uri.js";
export { loadClientCredentials, TlsConfigError, type ClientTlsOptions, type ServerTlsOptions } from "./tls.js";
export {
  ALLOCATION_DEPTH,
  BASE_ALLOCATION,
  DEFAULT_MAX_REQUEST,
  dirtyBitmapContext,
  Errno,
  STATE_DIRTY,
  STATE_HOLE,
  STATE_ZERO,
} from "./protocol.js";
