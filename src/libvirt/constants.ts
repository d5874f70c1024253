/**
 * libvirt constants (flags, states, error codes) with libvirt's own names, so code and
 * docs/*.md read alike. Values come from the libvirt 9.0 headers (generated with a C
 * program from the enums named in each block); newer values are added by hand at the end.
 * Only the values the code uses, except virErrorNumber, kept whole: `errorCodeName` names any
 * error code libvirt reports from this list.
 */

/** Error levels (virErrorLevel). */
export const VIR_ERR_NONE = 0;
export const VIR_ERR_WARNING = 1;
export const VIR_ERR_ERROR = 2;

/** Where an error came from (virErrorDomain): `LibvirtError.domain`. */
export const VIR_FROM_RPC = 7;
export const VIR_FROM_QEMU = 10;

/** Error codes (virErrorNumber): `LibvirtError.code`. */
export const VIR_ERR_OK = 0;
export const VIR_ERR_INTERNAL_ERROR = 1;
export const VIR_ERR_NO_MEMORY = 2;
export const VIR_ERR_NO_SUPPORT = 3;
export const VIR_ERR_UNKNOWN_HOST = 4;
export const VIR_ERR_NO_CONNECT = 5;
export const VIR_ERR_INVALID_CONN = 6;
export const VIR_ERR_INVALID_DOMAIN = 7;
export const VIR_ERR_INVALID_ARG = 8;
export const VIR_ERR_OPERATION_FAILED = 9;
export const VIR_ERR_GET_FAILED = 10;
export const VIR_ERR_POST_FAILED = 11;
export const VIR_ERR_HTTP_ERROR = 12;
export const VIR_ERR_SEXPR_SERIAL = 13;
export const VIR_ERR_NO_XEN = 14;
export const VIR_ERR_XEN_CALL = 15;
export const VIR_ERR_OS_TYPE = 16;
export const VIR_ERR_NO_KERNEL = 17;
export const VIR_ERR_NO_ROOT = 18;
export const VIR_ERR_NO_SOURCE = 19;
export const VIR_ERR_NO_TARGET = 20;
export const VIR_ERR_NO_NAME = 21;
export const VIR_ERR_NO_OS = 22;
export const VIR_ERR_NO_DEVICE = 23;
export const VIR_ERR_NO_XENSTORE = 24;
export const VIR_ERR_DRIVER_FULL = 25;
export const VIR_ERR_CALL_FAILED = 26;
export const VIR_ERR_XML_ERROR = 27;
export const VIR_ERR_DOM_EXIST = 28;
export const VIR_ERR_OPERATION_DENIED = 29;
export const VIR_ERR_OPEN_FAILED = 30;
export const VIR_ERR_READ_FAILED = 31;
export const VIR_ERR_PARSE_FAILED = 32;
export const VIR_ERR_CONF_SYNTAX = 33;
export const VIR_ERR_WRITE_FAILED = 34;
export const VIR_ERR_XML_DETAIL = 35;
export const VIR_ERR_INVALID_NETWORK = 36;
export const VIR_ERR_NETWORK_EXIST = 37;
export const VIR_ERR_SYSTEM_ERROR = 38;
export const VIR_ERR_RPC = 39;
export const VIR_ERR_GNUTLS_ERROR = 40;
export const VIR_WAR_NO_NETWORK = 41;
export const VIR_ERR_NO_DOMAIN = 42;
export const VIR_ERR_NO_NETWORK = 43;
export const VIR_ERR_INVALID_MAC = 44;
export const VIR_ERR_AUTH_FAILED = 45;
export const VIR_ERR_INVALID_STORAGE_POOL = 46;
export const VIR_ERR_INVALID_STORAGE_VOL = 47;
export const VIR_WAR_NO_STORAGE = 48;
export const VIR_ERR_NO_STORAGE_POOL = 49;
export const VIR_ERR_NO_STORAGE_VOL = 50;
export const VIR_WAR_NO_NODE = 51;
export const VIR_ERR_INVALID_NODE_DEVICE = 52;
export const VIR_ERR_NO_NODE_DEVICE = 53;
export const VIR_ERR_NO_SECURITY_MODEL = 54;
export const VIR_ERR_OPERATION_INVALID = 55;
export const VIR_WAR_NO_INTERFACE = 56;
export const VIR_ERR_NO_INTERFACE = 57;
export const VIR_ERR_INVALID_INTERFACE = 58;
export const VIR_ERR_MULTIPLE_INTERFACES = 59;
export const VIR_WAR_NO_NWFILTER = 60;
export const VIR_ERR_INVALID_NWFILTER = 61;
export const VIR_ERR_NO_NWFILTER = 62;
export const VIR_ERR_BUILD_FIREWALL = 63;
export const VIR_WAR_NO_SECRET = 64;
export const VIR_ERR_INVALID_SECRET = 65;
export const VIR_ERR_NO_SECRET = 66;
export const VIR_ERR_CONFIG_UNSUPPORTED = 67;
export const VIR_ERR_OPERATION_TIMEOUT = 68;
export const VIR_ERR_MIGRATE_PERSIST_FAILED = 69;
export const VIR_ERR_HOOK_SCRIPT_FAILED = 70;
export const VIR_ERR_INVALID_DOMAIN_SNAPSHOT = 71;
export const VIR_ERR_NO_DOMAIN_SNAPSHOT = 72;
export const VIR_ERR_INVALID_STREAM = 73;
export const VIR_ERR_ARGUMENT_UNSUPPORTED = 74;
export const VIR_ERR_STORAGE_PROBE_FAILED = 75;
export const VIR_ERR_STORAGE_POOL_BUILT = 76;
export const VIR_ERR_SNAPSHOT_REVERT_RISKY = 77;
export const VIR_ERR_OPERATION_ABORTED = 78;
export const VIR_ERR_AUTH_CANCELLED = 79;
export const VIR_ERR_NO_DOMAIN_METADATA = 80;
export const VIR_ERR_MIGRATE_UNSAFE = 81;
export const VIR_ERR_OVERFLOW = 82;
export const VIR_ERR_BLOCK_COPY_ACTIVE = 83;
export const VIR_ERR_OPERATION_UNSUPPORTED = 84;
export const VIR_ERR_SSH = 85;
export const VIR_ERR_AGENT_UNRESPONSIVE = 86;
export const VIR_ERR_RESOURCE_BUSY = 87;
export const VIR_ERR_ACCESS_DENIED = 88;
export const VIR_ERR_DBUS_SERVICE = 89;
export const VIR_ERR_STORAGE_VOL_EXIST = 90;
export const VIR_ERR_CPU_INCOMPATIBLE = 91;
export const VIR_ERR_XML_INVALID_SCHEMA = 92;
export const VIR_ERR_MIGRATE_FINISH_OK = 93;
export const VIR_ERR_AUTH_UNAVAILABLE = 94;
export const VIR_ERR_NO_SERVER = 95;
export const VIR_ERR_NO_CLIENT = 96;
export const VIR_ERR_AGENT_UNSYNCED = 97;
export const VIR_ERR_LIBSSH = 98;
export const VIR_ERR_DEVICE_MISSING = 99;
export const VIR_ERR_INVALID_NWFILTER_BINDING = 100;
export const VIR_ERR_NO_NWFILTER_BINDING = 101;
export const VIR_ERR_INVALID_DOMAIN_CHECKPOINT = 102;
export const VIR_ERR_NO_DOMAIN_CHECKPOINT = 103;
export const VIR_ERR_NO_DOMAIN_BACKUP = 104;
export const VIR_ERR_INVALID_NETWORK_PORT = 105;
export const VIR_ERR_NETWORK_PORT_EXIST = 106;
export const VIR_ERR_NO_NETWORK_PORT = 107;
export const VIR_ERR_NO_HOSTNAME = 108;
export const VIR_ERR_CHECKPOINT_INCONSISTENT = 109;
export const VIR_ERR_MULTIPLE_DOMAINS = 110;

/** Connection open flags. */
export const VIR_CONNECT_RO = 1;

/** Reasons passed to connection close callbacks. */
export const VIR_CONNECT_CLOSE_REASON_ERROR = 0;
export const VIR_CONNECT_CLOSE_REASON_EOF = 1;
export const VIR_CONNECT_CLOSE_REASON_KEEPALIVE = 2;
export const VIR_CONNECT_CLOSE_REASON_CLIENT = 3;

/** Domain states (`Domain.state()`). */
export const VIR_DOMAIN_RUNNING = 1;
export const VIR_DOMAIN_PAUSED = 3;
export const VIR_DOMAIN_SHUTOFF = 5;

/** Reasons for VIR_DOMAIN_PAUSED. */
export const VIR_DOMAIN_PAUSED_USER = 1;

/** Reasons for VIR_DOMAIN_SHUTOFF. */
export const VIR_DOMAIN_SHUTOFF_UNKNOWN = 0;

/** Flags for `Domain.create()` / `Connection.createXML()`. */
export const VIR_DOMAIN_START_PAUSED = 1;
export const VIR_DOMAIN_START_AUTODESTROY = 2;

/** Flags for `Domain.xmlDesc()`. */
export const VIR_DOMAIN_XML_INACTIVE = 2;

/** Flags for `Connection.defineXML()`. */
export const VIR_DOMAIN_DEFINE_VALIDATE = 1;

/** Flags for `Domain.undefine()`. */
export const VIR_DOMAIN_UNDEFINE_MANAGED_SAVE = 1;
export const VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA = 2;
export const VIR_DOMAIN_UNDEFINE_NVRAM = 4;
export const VIR_DOMAIN_UNDEFINE_KEEP_NVRAM = 8;
export const VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA = 16;

/** Flags for `Connection.listAllDomains()`. */
export const VIR_CONNECT_LIST_DOMAINS_TRANSIENT = 8;

/** Block job types (`Domain.blockJobInfo().type`). */
export const VIR_DOMAIN_BLOCK_JOB_TYPE_BACKUP = 5;

/** Job types (`Domain.jobInfo().type`). */
export const VIR_DOMAIN_JOB_NONE = 0;

/** Job operations (`Domain.jobStats().params.operation`). */
export const VIR_DOMAIN_JOB_OPERATION_BACKUP = 9;

/** Flags for `Domain.jobStats()`. */
export const VIR_DOMAIN_JOB_STATS_COMPLETED = 1;

/** Types for `Domain.guestInfo()`. */
export const VIR_DOMAIN_GUEST_INFO_OS = 2;

/** Flags for `Domain.checkpointCreateXML()`. */
export const VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE = 1;
export const VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE_VALIDATE = 4;

/** Flags for `Checkpoint.xmlDesc()`. */
export const VIR_DOMAIN_CHECKPOINT_XML_NO_DOMAIN = 2;
export const VIR_DOMAIN_CHECKPOINT_XML_SIZE = 4;

/** Flags for `Domain.listAllCheckpoints()` and `Checkpoint.listAllChildren()`. */
export const VIR_DOMAIN_CHECKPOINT_LIST_LEAVES = 4;
/** `Checkpoint.listAllChildren()`: the children's children too, all the way down. */
export const VIR_DOMAIN_CHECKPOINT_LIST_DESCENDANTS = 1;

/** Flags for `Checkpoint.delete()`. */
export const VIR_DOMAIN_CHECKPOINT_DELETE_CHILDREN = 1;
export const VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY = 2;

/** Flags for `Domain.qemuMonitorCommand()`. */
export const VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP = 1;

/** Timeouts for `Domain.qemuAgentCommand()`. */
export const VIR_DOMAIN_QEMU_AGENT_COMMAND_DEFAULT = -1;

/** Newer than the 9.0 headers (libvirt ≥ 11.10): keep a shut-down domain's qemu alive for the backup job. */
export const VIR_DOMAIN_BACKUP_BEGIN_PRESERVE_SHUTDOWN_DOMAIN = 2;
/** First libvirt version (major*1e6 + minor*1e3 + micro) that accepts PRESERVE_SHUTDOWN_DOMAIN. */
export const LIBVIRT_VERSION_PRESERVE_SHUTDOWN_DOMAIN = 11010000;
/** First libvirt version with incremental backup enabled without `<qemu:capabilities>`. */
export const LIBVIRT_VERSION_INCREMENTAL_BACKUP_DEFAULT = 7006000;
