/**
 * QMP commands to a running domain's qemu through libvirt (virDomainQemuMonitorCommand): the
 * reply's `return`, or a QmpError with qemu's own message. libvirt passes a QMP error reply back
 * as a successful call, so it is checked here.
 */

/** What a QMP call needs of a domain (a narrow view of `Domain`). */
export interface QmpTarget {
  readonly name: string;
  qemuMonitorCommand(command: string, flags?: number): Promise<string>;
}

export class QmpError extends Error {
  override readonly name = "QmpError";
  constructor(
    message: string,
    /** The command that failed, e.g. "block-dirty-bitmap-remove". */
    readonly command: string,
    /** qemu's error class, e.g. "GenericError". */
    readonly errorClass: string,
  ) {
    super(message);
  }
}

/** Runs `execute` with `args`; resolves with the reply's `return` value. */
export async function qmp<T = unknown>(domain: QmpTarget, execute: string, args?: Record<string, unknown>): Promise<T> {
  const command = JSON.stringify(args === undefined ? { execute } : { execute, arguments: args });
  const text = await domain.qemuMonitorCommand(command);
  let reply: { return?: unknown; error?: { class?: string; desc?: string } };
  try {
    reply = JSON.parse(text) as typeof reply;
  } catch {
    throw new QmpError(`QMP ${execute} on domain ${domain.name}: unreadable reply: ${text.slice(0, 200)}`, execute, "");
  }
  if (reply.error) {
    const desc = reply.error.desc ?? JSON.stringify(reply.error);
    throw new QmpError(`QMP ${execute} on domain ${domain.name} failed: ${desc}`, execute, reply.error.class ?? "");
  }
  return reply.return as T;
}
