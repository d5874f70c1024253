/**
 * `virtnbdmap`: serve a backup chain (full + incs/diffs up to a point in time, plain,
 * lz4-compressed or inside `-o -` zips) as an NBD export on `-l`/`-p` as `-e` (our server,
 * session.ts), and attach it to `/dev/nbdX` with qemu-nbd unless `--listen-only`.
 * Writes go to a copy-on-write overlay; the backup files are opened read-only.
 * A stop (signal) detaches, stops the server, removes temp files: exit 0. While
 * NBD clients other than the device are connected, the first signal only warns that their
 * overlay writes would be lost; a second signal, or the last client leaving, stops.
 */
import type { Logger } from "../report/log.js";
import { ChainLoadError, loadChain, type MappedChain } from "../chain/chain-loader.js";
import { MapFileError } from "../chain/chain-files.js";
import { StreamFormatError } from "../format/errors.js";
import { attachDevice, connectHost, detachDevice, deviceErrors, which } from "../qemu/nbd-device.js";
import { signalNumber, type SignalQueue } from "../connect/signals.js";
import { cacheSizeBytes, cowBlockSize, type MapArgs } from "./options.js";
import { MapSession } from "./session.js";
import { runEvents, type NbdServerFields } from "../report/events.js";

/** Why serving ends: a signal, or (after a signal) the last client leaving. */
export type Stop = { kind: "signal"; signal: NodeJS.Signals } | { kind: "clients" };

/** Serves the chain until a signal stops it; returns the exit code. */
export async function mapChain(args: MapArgs, log: Logger, signals: SignalQueue): Promise<number> {
  if (!(await prerequisitesMet(args, log))) return 1;
  const chain = await loadChainLogged(args, log);
  if (!chain) return 1;
  return serve(args, log, chain, signals);
}

function nextSignal(signals: SignalQueue): Promise<Stop> {
  return signals.next().then((signal): Stop => ({ kind: "signal", signal }));
}

/** The checks the original does before mapping (docs/cli.md, "virtnbdmap checks"); every problem is logged, then false. */
async function prerequisitesMet(args: MapArgs, log: Logger): Promise<boolean> {
  let ok = true;
  const error = (line: string) => {
    log.error(line);
    ok = false;
  };
  if (args.given.has("threads")) log.info("Option -t has no effect: virtnbdmap serves the export itself, without nbdkit.");
  if (!args.listenOnly) {
    if (!(await which("qemu-nbd"))) error("Please install required [qemu-nbd] utility.");
    for (const e of deviceErrors(args.device)) error(e);
  }
  try {
    cowBlockSize(args.blocksize, 0);
  } catch {
    error(`Invalid blocksize [${args.blocksize}]: expected a size in bytes (4096, 64k, 1M).`);
  }
  try {
    cacheSizeBytes(args.cacheSize);
  } catch (e) {
    error(`${(e as Error).message[0]!.toUpperCase()}${(e as Error).message.slice(1)}.`);
  }
  if (args.file.split(",").length > 1 && args.readonly) error("Device mapping with incrementals doesn't work in readonly mode");
  return ok;
}

async function loadChainLogged(args: MapArgs, log: Logger): Promise<MappedChain | null> {
  let chain: MappedChain;
  try {
    chain = await loadChain(args.file.split(","), {
      onFile: (m) => log.info(`Parsed [${m.frames}] block offsets from file [${m.given}]${m.compressed ? " (lz4 compressed)" : ""}`),
    });
  } catch (e) {
    if (e instanceof ChainLoadError || e instanceof MapFileError) log.error(e.message);
    else if (e instanceof StreamFormatError) log.error(`Unable to read backup file: ${e.message}`);
    else log.error(`Unable to read backup file: ${(e as Error).message}`);
    return null;
  }
  const ix = chain.index;
  log.info(
    `Chain of [${chain.members.length}] file(s) for disk [${chain.members[0]!.meta.diskName}]: ` +
      `[${ix.size}] bytes virtual size, [${ix.dataBytes()}] bytes of data in [${ix.rangeCount}] extents`,
  );
  if (!args.listenOnly) log.info(`Target device: ${args.device}`);
  return chain;
}

/** Where the session's server listens, as the `nbd-server` event says it (docs/events.md). */
function mapServerEvent(session: MapSession): NbdServerFields {
  const o = session.opts;
  return { server: "virtnbdmap", transport: "tcp", host: o.listenAddress, port: Number(o.port), exports: [o.exportName], tls: false };
}

/** Starts the server, attaches the device (unless --listen-only), waits for the stop. */
async function serve(args: MapArgs, log: Logger, chain: MappedChain, signals: SignalQueue): Promise<number> {
  const session = await MapSession.create(chain, {
    exportName: args.exportName,
    listenAddress: args.listenAddress,
    port: args.listenPort,
    blocksize: args.blocksize,
    readOnly: args.readonly,
    verbose: args.verbose,
    hexdump: args.hexdump,
    decodedCacheBytes: cacheSizeBytes(args.cacheSize),
    log: (m) => log.debug(`NBD server: ${m}`),
  });
  let attached: string | null = null;
  const teardown = async (): Promise<void> => {
    if (attached) {
      const r = await detachDevice(attached);
      if (r.code !== 0) log.error(`Failed to disconnect device [${attached}]: ${r.stderr}`);
      attached = null;
    }
    await session.stop();
    if (args.verbose) log.info(`Keeping server logfile: [${session.serverLog}]`);
    else log.info(`Removing temporary directory: [${session.tmpDir}]`);
  };

  try {
    const started = session.start().then(() => null);
    const first = await Promise.race([started, nextSignal(signals)]);
    if (first) {
      await started.catch(() => undefined);
      log.info(`Received signal: [${signalNumber(first.kind === "signal" ? first.signal : "SIGTERM")}]`);
      await teardown();
      return 0;
    }
  } catch (e) {
    log.error(`Failed to start NBD server on [${args.listenAddress}:${args.listenPort}]: [${(e as Error).message}]`);
    await teardown();
    return 1;
  }
  const overlay = session.overlayBlockBytes;
  log.info(`Started NBD server on [${args.listenAddress}:${args.listenPort}]${overlay ? `, writes into a copy-on-write overlay of [${overlay}] byte blocks` : ", read-only"}, temporary directory: [${session.tmpDir}]`);
  runEvents.nbdServer(mapServerEvent(session));
  const cache = session.decodedFrames;
  if (cache) log.info(`Decoded lz4 frames are cached on disk: up to [${cache.maxBytes}] bytes`);

  if (!(await announceOrAttach(args, log))) {
    await teardown();
    return 1;
  }
  if (!args.listenOnly) attached = args.device;
  // The device's own connection (qemu-nbd) is not a client to wait for.
  const deviceConnections = args.listenOnly ? 0 : session.clientConnections;
  log.info("Press CTRL+C to disconnect");

  await waitForStop(session, signals, deviceConnections, log);
  await teardown();
  return 0;
}

/** `--listen-only`: logs the URI; otherwise attaches the device (false: it failed, logged). */
async function announceOrAttach(args: MapArgs, log: Logger): Promise<boolean> {
  const host = connectHost(args.listenAddress);
  const uri = `nbd://${host}:${args.listenPort}/${args.exportName}`;
  if (args.listenOnly) {
    log.info(`Serving backup chain on ${uri}${args.readonly ? " (read-only)" : ""}`);
    return true;
  }
  if (args.readonly) {
    log.warning("Device will be mapped readonly without cow.");
    log.warning("Mounting will only work with '-o norecovery,ro'");
  }
  const r = await attachDevice({ device: args.device, uri, readOnly: args.readonly, log });
  if (r.code !== 0) {
    log.error("Failed to map device:");
    log.error(`Stderr: [${r.stderr}]`);
    return false;
  }
  log.info(`Done mapping backup image to [${args.device}]`);
  return true;
}

/**
 * Waits for a signal. A signal while NBD clients other than the device are
 * connected only warns that their overlay writes would be lost; then a second signal or the
 * last of them leaving is the stop.
 */
async function waitForStop(session: MapSession, signals: SignalQueue, deviceConnections: number, log: Logger): Promise<Stop> {
  const stop = await nextSignal(signals);
  if (stop.kind !== "signal") return stop;
  log.info(`Received signal: [${signalNumber(stop.signal)}]`);
  const clients = session.clientConnections - deviceConnections;
  if (clients <= 0) return stop;
  log.warning(
    `[${clients}] NBD client connection(s) still open: what they wrote went into the copy-on-write overlay ` +
      "and is lost when the mapping stops. Stopping when they disconnect; send the signal again to stop now.",
  );
  const lastClientLeft = session.clientsAtMost(deviceConnections).then((): Stop => ({ kind: "clients" }));
  const second = await Promise.race([nextSignal(signals), lastClientLeft]);
  if (second.kind === "signal") log.info(`Received signal: [${signalNumber(second.signal)}]`);
  if (second.kind === "clients") log.info("All NBD clients disconnected");
  return second;
}
