import { commandName, describeErrno, errnoName } from "./protocol.js";

/** Base class of every error raised by the NBD client and server. */
export class NbdError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NbdError";
  }
}

/** What a request was about, for messages: `read at offset 4096 (65536 bytes)`. */
export function describeRequest(command: number, offset: number, length: number): string {
  const name = commandName(command);
  if (name === "flush" || name === "disconnect") return name;
  return `${name} at offset ${offset} (${length} bytes)`;
}

function exportSuffix(exportName: string | undefined): string {
  return exportName === undefined ? "" : ` [export '${exportName}']`;
}

/** The server answered a request with an error. */
export class NbdRequestError extends NbdError {
  /** e.g. `EIO`. */
  readonly code: string;
  constructor(
    readonly command: number,
    readonly offset: number,
    readonly length: number,
    readonly errno: number,
    readonly serverMessage: string,
    readonly exportName?: string,
  ) {
    const msg = serverMessage ? `: ${serverMessage}` : "";
    super(
      `NBD ${describeRequest(command, offset, length)} failed: ${describeErrno(errno)}${msg}${exportSuffix(exportName)}`,
    );
    this.name = "NbdRequestError";
    this.code = errnoName(errno);
  }
}

/** The connection went away (or was torn down) while a request was pending or being sent. */
export class NbdConnectionError extends NbdError {
  constructor(message: string) {
    super(message);
    this.name = "NbdConnectionError";
  }
}

/** The peer broke the protocol; the connection is closed. */
export class NbdProtocolError extends NbdError {
  constructor(message: string) {
    super(message);
    this.name = "NbdProtocolError";
  }
}

/** Option negotiation failed (export unknown, TLS refused, ...). */
export class NbdHandshakeError extends NbdError {
  constructor(
    message: string,
    /** NBD_REP_ERR_* value when the server sent one. */
    readonly replyType?: number,
  ) {
    super(message);
    this.name = "NbdHandshakeError";
  }
}

/** Same name and text as upstream's exception. */
export class NbdConnectionTimeout extends NbdError {
  constructor(
    message = "Timeout during connection to NBD server backend.",
    readonly lastError?: unknown,
  ) {
    super(message);
    this.name = "NbdConnectionTimeout";
  }
}

/** The caller's AbortSignal fired while connecting or negotiating; the socket is closed. */
export class NbdConnectAborted extends NbdError {
  constructor(message = "NBD connection attempt aborted") {
    super(message);
    this.name = "NbdConnectAborted";
  }
}

/** Thrown by a server backend to answer with a specific NBD errno. */
export class NbdBackendError extends NbdError {
  constructor(
    readonly nbdErrno: number,
    message: string,
  ) {
    super(message);
    this.name = "NbdBackendError";
  }
}
