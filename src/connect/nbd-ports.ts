/**
 * The TCP ports of the NBD servers a remote run starts on the hypervisor (docs/behaviour.md,
 * "NBD ports"): `-P/--nbd-port` is one port `N` (exactly that one, as the original: offline
 * disks on `N + index`), a range `N-M`, or `auto` (the range 10809-10909). With a range, each
 * server takes the lowest port of the range that no server of this run holds; when the
 * hypervisor reports that port in use (libvirt's job start, qemu-nbd's bind: "Address already
 * in use"), the next one. Two runs that pick the same port at once are sorted out the same way:
 * the loser's bind fails and it moves on.
 */
import { pyRepr } from "../report/humanize.js";

/** `-P` as given: one port, or a range to choose from. */
export interface NbdPorts {
  first: number;
  last: number;
  /** `N-M` or `auto`: try the next port when one is in use. A single port means exactly that port. */
  range: boolean;
}

/** What `-P auto` stands for. */
export const AUTO_NBD_PORTS: NbdPorts = { first: 10809, last: 10909, range: true };

export class NbdPortsError extends Error {}

/** A port as Python's `int()` reads it (the original's `type=int`: `+10809`, `10_809`), 1-65535. */
function port(text: string, spec: string): number {
  const n = /^\+?\d+(?:_\d+)*$/.test(text) ? Number(text.replace(/[+_]/g, "")) : NaN;
  if (!(n >= 1 && n <= 65535)) throw new NbdPortsError(`invalid port value: ${pyRepr(spec)} (a port 1-65535, a range N-M or auto)`);
  return n;
}

/** `N`, `N-M` or `auto`; anything else throws NbdPortsError with the one line a usage error shows. */
export function parseNbdPorts(spec: string): NbdPorts {
  const s = spec.trim();
  if (s === "auto") return { ...AUTO_NBD_PORTS };
  const m = /^(\S+?)-(\S+)$/.exec(s);
  if (!m) {
    const p = port(s, spec);
    return { first: p, last: p, range: false };
  }
  const first = port(m[1]!, spec);
  const last = port(m[2]!, spec);
  if (last < first) throw new NbdPortsError(`invalid port range: ${pyRepr(spec)} (the first port is above the last)`);
  return { first, last, range: true };
}

/** `10809`, `10809-10909`. */
export function formatNbdPorts(p: NbdPorts): string {
  return p.range ? `${p.first}-${p.last}` : String(p.first);
}

/** The hypervisor's answer when a server could not bind its port (qemu's and qemu-nbd's message). */
export function isPortInUse(e: unknown): boolean {
  return /Address already in use/i.test((e as Error | null)?.message ?? String(e));
}

/** The ports one run hands to its servers (the job's, or one qemu-nbd per disk). */
export class NbdPortPool {
  /** Ports a server of this run listens on. */
  private readonly held = new Set<number>();
  /** Ports the hypervisor reported in use: not tried again by this run. */
  private readonly busy = new Set<number>();

  constructor(readonly ports: NbdPorts) {}

  /**
   * The port for server `index`: a single port `N` gives `N + index` (the original's offline
   * rule), a range its lowest port neither held nor busy; null when the range is used up.
   */
  claim(index: number): number | null {
    if (!this.ports.range) return this.ports.first + index;
    for (let p = this.ports.first; p <= this.ports.last; p++) {
      if (this.held.has(p) || this.busy.has(p)) continue;
      this.held.add(p);
      return p;
    }
    return null;
  }

  /** The server on `port` has ended: another server of the run may take it. */
  release(port: number): void {
    this.held.delete(port);
  }

  /** The hypervisor said `port` is in use. */
  markBusy(port: number): void {
    this.held.delete(port);
    this.busy.add(port);
  }
}

interface PortLog {
  info(m: string): void;
}

/**
 * Starts a server with `start(port)` on the port `pool` gives server `index`, and on the next
 * one while the hypervisor (`where`) reports the port in use (ranges only: a single port fails
 * as it did). Resolves with what `start` returned and the port; the caller releases the port
 * when the server has ended.
 */
export async function onFreePort<T>(pool: NbdPortPool, index: number, where: string, log: PortLog, start: (port: number) => Promise<T>): Promise<{ value: T; port: number }> {
  let last: unknown = null;
  for (;;) {
    const port = pool.claim(index);
    if (port === null) {
      const why = last ? `: ${(last as Error).message ?? String(last)}` : "";
      throw new NbdPortsError(`No free NBD port in [${formatNbdPorts(pool.ports)}] on [${where}]: every port of the range is in use${why}`);
    }
    try {
      const value = await start(port);
      if (pool.ports.range) log.info(`Using NBD port [${port}] of [${formatNbdPorts(pool.ports)}] on [${where}].`);
      return { value, port };
    } catch (e) {
      if (!pool.ports.range || !isPortInUse(e)) {
        pool.release(port);
        throw e;
      }
      pool.markBusy(port);
      last = e;
      log.info(`NBD port [${port}] is in use on [${where}], trying the next port of [${formatNbdPorts(pool.ports)}].`);
    }
  }
}
