/**
 * NBD wire protocol: constants, encoders and small decoders. Everything is big endian
 * ("network byte order"). 64-bit values are handled as two 32-bit halves so that offsets
 * stay plain numbers (exact up to 2^53, i.e. 8 PiB).
 */

// --- magics -------------------------------------------------------------------------
/** 'NBDMAGIC' as two 32-bit halves. */
export const NBDMAGIC_HI = 0x4e42444d;
export const NBDMAGIC_LO = 0x41474943;
/** 'IHAVEOPT'. */
export const IHAVEOPT_HI = 0x49484156;
export const IHAVEOPT_LO = 0x454f5054;
/** Oldstyle negotiation magic 0x00420281861253. */
export const CLISERV_MAGIC_HI = 0x00004202;
export const CLISERV_MAGIC_LO = 0x81861253;
/** Option reply magic 0x3e889045565a9. */
export const REPLY_MAGIC_HI = 0x0003e889;
export const REPLY_MAGIC_LO = 0x045565a9;

export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

// --- sizes --------------------------------------------------------------------------
export const REQUEST_HEADER_LEN = 28;
export const SIMPLE_REPLY_LEN = 16;
export const STRUCTURED_HEADER_LEN = 20;
export const OPTION_HEADER_LEN = 16;
export const OPTION_REPLY_HEADER_LEN = 20;
/** Strings (export names, messages, context names) are at most this long by the spec. */
export const MAX_STRING_LEN = 4096;
/** The block size clients should stay within when the server announces none. */
export const DEFAULT_MAX_REQUEST = 32 * 1024 * 1024;
export const MAX_U32 = 0xffffffff;

// --- handshake flags ----------------------------------------------------------------
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;
export const FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_C_NO_ZEROES = 1 << 1;

// --- options ------------------------------------------------------------------------
export const Opt = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
  EXTENDED_HEADERS: 11,
} as const;

export const Rep = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
} as const;

export const REP_FLAG_ERROR = 0x80000000;
export const RepErr = {
  UNSUP: 0x80000001,
  POLICY: 0x80000002,
  INVALID: 0x80000003,
  PLATFORM: 0x80000004,
  TLS_REQD: 0x80000005,
  UNKNOWN: 0x80000006,
  SHUTDOWN: 0x80000007,
  BLOCK_SIZE_REQD: 0x80000008,
  TOO_BIG: 0x80000009,
  EXT_HEADER_REQD: 0x8000000a,
} as const;

export const Info = {
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  BLOCK_SIZE: 3,
} as const;

// --- transmission flags -------------------------------------------------------------
export const TFlag = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_RESIZE: 1 << 9,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
} as const;

// --- commands -----------------------------------------------------------------------
export const Cmd = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;

export const CmdFlag = {
  FUA: 1 << 0,
  NO_HOLE: 1 << 1,
  DF: 1 << 2,
  REQ_ONE: 1 << 3,
  FAST_ZERO: 1 << 4,
} as const;

export const REPLY_FLAG_DONE = 1 << 0;

export const ReplyType = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: 0x8001,
  ERROR_OFFSET: 0x8002,
} as const;
export const REPLY_TYPE_ERROR_BIT = 0x8000;

/** base:allocation status flags. */
export const STATE_HOLE = 1 << 0;
export const STATE_ZERO = 1 << 1;
/** qemu:dirty-bitmap:* status flag. */
export const STATE_DIRTY = 1 << 0;

export const BASE_ALLOCATION = "base:allocation";
export const ALLOCATION_DEPTH = "qemu:allocation-depth";
export const dirtyBitmapContext = (bitmap: string): string => `qemu:dirty-bitmap:${bitmap}`;

// --- errors -------------------------------------------------------------------------
export const Errno = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

const ERRNO_TEXT: Record<number, [string, string]> = {
  1: ["EPERM", "Operation not permitted"],
  5: ["EIO", "Input/output error"],
  12: ["ENOMEM", "Cannot allocate memory"],
  22: ["EINVAL", "Invalid argument"],
  28: ["ENOSPC", "No space left on device"],
  75: ["EOVERFLOW", "Value too large for defined data type"],
  95: ["ENOTSUP", "Operation not supported"],
  108: ["ESHUTDOWN", "Cannot send after transport endpoint shutdown"],
};

/** `EIO` for 5; `errno 1234` for values outside the protocol's list. */
export function errnoName(errno: number): string {
  return ERRNO_TEXT[errno]?.[0] ?? `errno ${errno}`;
}

/** `EIO (Input/output error)`. */
export function describeErrno(errno: number): string {
  const t = ERRNO_TEXT[errno];
  return t ? `${t[0]} (${t[1]})` : `errno ${errno} (unknown error)`;
}

const CODE_TO_ERRNO: Record<string, number> = {
  EPERM: Errno.EPERM,
  EACCES: Errno.EPERM,
  EROFS: Errno.EPERM,
  EIO: Errno.EIO,
  ENOMEM: Errno.ENOMEM,
  EINVAL: Errno.EINVAL,
  ENOSPC: Errno.ENOSPC,
  EDQUOT: Errno.ENOSPC,
  EFBIG: Errno.ENOSPC,
  EOVERFLOW: Errno.EOVERFLOW,
  ENOTSUP: Errno.ENOTSUP,
  EOPNOTSUPP: Errno.ENOTSUP,
  ESHUTDOWN: Errno.ESHUTDOWN,
};

/** Maps a thrown error (with `nbdErrno`, a Node `code` or a numeric `errno`) to an NBD errno; EIO otherwise. */
export function toNbdErrno(err: unknown): number {
  if (err && typeof err === "object") {
    const e = err as { nbdErrno?: unknown; code?: unknown; errno?: unknown };
    if (typeof e.nbdErrno === "number" && ERRNO_TEXT[e.nbdErrno]) return e.nbdErrno;
    if (typeof e.code === "string" && CODE_TO_ERRNO[e.code] !== undefined) return CODE_TO_ERRNO[e.code]!;
    if (typeof e.errno === "number") {
      const n = Math.abs(e.errno);
      if (ERRNO_TEXT[n]) return n;
    }
  }
  return Errno.EIO;
}

export function optionName(opt: number): string {
  for (const [k, v] of Object.entries(Opt)) if (v === opt) return `NBD_OPT_${k}`;
  return `option ${opt}`;
}

export function commandName(cmd: number): string {
  switch (cmd) {
    case Cmd.READ:
      return "read";
    case Cmd.WRITE:
      return "write";
    case Cmd.DISC:
      return "disconnect";
    case Cmd.FLUSH:
      return "flush";
    case Cmd.TRIM:
      return "trim";
    case Cmd.CACHE:
      return "cache";
    case Cmd.WRITE_ZEROES:
      return "write-zeroes";
    case Cmd.BLOCK_STATUS:
      return "block-status";
    default:
      return `command ${cmd}`;
  }
}

export function repErrName(type: number): string {
  for (const [k, v] of Object.entries(RepErr)) if (v === type) return `NBD_REP_ERR_${k}`;
  return `reply type 0x${type.toString(16)}`;
}

// --- 64-bit helpers -----------------------------------------------------------------
const TWO32 = 0x100000000;

/** Reads an unsigned 64-bit value; values above 2^53 come out as Infinity (callers reject them). */
export function readU64(buf: Buffer, at: number): number {
  const hi = buf.readUInt32BE(at);
  const lo = buf.readUInt32BE(at + 4);
  if (hi >= 0x200000) return Infinity;
  return hi * TWO32 + lo;
}

export function writeU64(buf: Buffer, value: number, at: number): void {
  buf.writeUInt32BE(Math.floor(value / TWO32) >>> 0, at);
  buf.writeUInt32BE(value % TWO32 >>> 0, at + 4);
}

// --- encoders -----------------------------------------------------------------------
/** Client option: IHAVEOPT, option, length, data. */
export function encodeOption(opt: number, data?: Buffer): Buffer {
  const len = data?.length ?? 0;
  const b = Buffer.allocUnsafe(OPTION_HEADER_LEN + len);
  b.writeUInt32BE(IHAVEOPT_HI, 0);
  b.writeUInt32BE(IHAVEOPT_LO, 4);
  b.writeUInt32BE(opt >>> 0, 8);
  b.writeUInt32BE(len, 12);
  if (data) data.copy(b, OPTION_HEADER_LEN);
  return b;
}

/** Server option reply: magic, option, reply type, length, data. */
export function encodeOptionReply(opt: number, type: number, data?: Buffer): Buffer {
  const len = data?.length ?? 0;
  const b = Buffer.allocUnsafe(OPTION_REPLY_HEADER_LEN + len);
  b.writeUInt32BE(REPLY_MAGIC_HI, 0);
  b.writeUInt32BE(REPLY_MAGIC_LO, 4);
  b.writeUInt32BE(opt >>> 0, 8);
  b.writeUInt32BE(type >>> 0, 12);
  b.writeUInt32BE(len, 16);
  if (data) data.copy(b, OPTION_REPLY_HEADER_LEN);
  return b;
}

/** Data of NBD_OPT_INFO / NBD_OPT_GO: name length, name, info count, info types. */
export function encodeInfoRequest(exportName: string, infos: readonly number[]): Buffer {
  const name = Buffer.from(exportName, "utf8");
  const b = Buffer.allocUnsafe(4 + name.length + 2 + 2 * infos.length);
  b.writeUInt32BE(name.length, 0);
  name.copy(b, 4);
  let p = 4 + name.length;
  b.writeUInt16BE(infos.length, p);
  p += 2;
  for (const i of infos) {
    b.writeUInt16BE(i, p);
    p += 2;
  }
  return b;
}

/** Data of NBD_OPT_SET_META_CONTEXT / NBD_OPT_LIST_META_CONTEXT. */
export function encodeMetaContextRequest(exportName: string, queries: readonly string[]): Buffer {
  const name = Buffer.from(exportName, "utf8");
  const qs = queries.map((q) => Buffer.from(q, "utf8"));
  const b = Buffer.allocUnsafe(4 + name.length + 4 + qs.reduce((s, q) => s + 4 + q.length, 0));
  b.writeUInt32BE(name.length, 0);
  name.copy(b, 4);
  let p = 4 + name.length;
  b.writeUInt32BE(qs.length, p);
  p += 4;
  for (const q of qs) {
    b.writeUInt32BE(q.length, p);
    q.copy(b, p + 4);
    p += 4 + q.length;
  }
  return b;
}

/** Writes a 28-byte request header at `at`. The cookie is a number below 2^53. */
export function encodeRequest(
  buf: Buffer,
  at: number,
  flags: number,
  type: number,
  cookie: number,
  offset: number,
  length: number,
): void {
  buf.writeUInt32BE(REQUEST_MAGIC, at);
  buf.writeUInt16BE(flags, at + 4);
  buf.writeUInt16BE(type, at + 6);
  writeU64(buf, cookie, at + 8);
  writeU64(buf, offset, at + 16);
  buf.writeUInt32BE(length >>> 0, at + 24);
}

/** Simple reply (16 bytes); `cookie` is the raw 8 bytes from the request. */
export function encodeSimpleReply(cookieHi: number, cookieLo: number, error: number): Buffer {
  const b = Buffer.allocUnsafe(SIMPLE_REPLY_LEN);
  b.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
  b.writeUInt32BE(error >>> 0, 4);
  b.writeUInt32BE(cookieHi >>> 0, 8);
  b.writeUInt32BE(cookieLo >>> 0, 12);
  return b;
}

/** Structured reply chunk header (20 bytes) followed by `extra` bytes of room for the caller. */
export function encodeStructuredHeader(
  flags: number,
  type: number,
  cookieHi: number,
  cookieLo: number,
  length: number,
  extra = 0,
): Buffer {
  const b = Buffer.allocUnsafe(STRUCTURED_HEADER_LEN + extra);
  b.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeUInt32BE(cookieHi >>> 0, 8);
  b.writeUInt32BE(cookieLo >>> 0, 12);
  b.writeUInt32BE(length >>> 0, 16);
  return b;
}

/** Structured error chunk (type ERROR) with a message cut to the string limit. */
export function encodeErrorChunk(cookieHi: number, cookieLo: number, errno: number, message: string, done = true): Buffer {
  let msg = Buffer.from(message, "utf8");
  if (msg.length > MAX_STRING_LEN) msg = msg.subarray(0, MAX_STRING_LEN);
  const b = encodeStructuredHeader(done ? REPLY_FLAG_DONE : 0, ReplyType.ERROR, cookieHi, cookieLo, 6 + msg.length, 6 + msg.length);
  b.writeUInt32BE(errno >>> 0, 20);
  b.writeUInt16BE(msg.length, 24);
  msg.copy(b, 26);
  return b;
}

// --- transmission flags -> booleans ---------------------------------------------------
export interface ExportFlags {
  readOnly: boolean;
  canFlush: boolean;
  canFua: boolean;
  rotational: boolean;
  canTrim: boolean;
  canWriteZeroes: boolean;
  canDf: boolean;
  canMultiConn: boolean;
  canCache: boolean;
  canFastZero: boolean;
}

export function decodeTransmissionFlags(f: number): ExportFlags {
  return {
    readOnly: (f & TFlag.READ_ONLY) !== 0,
    canFlush: (f & TFlag.SEND_FLUSH) !== 0,
    canFua: (f & TFlag.SEND_FUA) !== 0,
    rotational: (f & TFlag.ROTATIONAL) !== 0,
    canTrim: (f & TFlag.SEND_TRIM) !== 0,
    canWriteZeroes: (f & TFlag.SEND_WRITE_ZEROES) !== 0,
    canDf: (f & TFlag.SEND_DF) !== 0,
    canMultiConn: (f & TFlag.CAN_MULTI_CONN) !== 0,
    canCache: (f & TFlag.SEND_CACHE) !== 0,
    canFastZero: (f & TFlag.SEND_FAST_ZERO) !== 0,
  };
}
