/**
 * `virtnbdmap`: serve a backup chain (full + incs/diffs up to a point in time, plain,
 * lz4-compressed or inside `-o -` zips) as an NBD export through nbdkit, and attach it to
 * `/dev/nbdX` with qemu-nbd, or with `--listen-only` just serve it on `-l`/`-p` as `-e`.
 * Writes go to nbdkit's cow overlay; the backup files are opened read-only.
 * SIGINT/SIGTERM/SIGHUP: detach, stop nbdkit and the helper, remove temp files, exit 0.
 */
import { parseMapArgs } from "./args.js";
import { logging, LogFileError, type Logger } from "./log.js";
import { versionLine } from "./run.js";
import { ChainLoadError, loadChain, type MappedChain } from "../map/chain.js";
import { MapFileError } from "../map/chain-files.js";
import { MapSession } from "../map/session.js";
import { StreamFormatError } from "../format/errors.js";
import { attachDevice, connectHost, detachDevice, deviceErrors } from "../nbdkit-plugin/device.js";
import { cowBlockSize, describeExit, missingModules, nbdkitInstall, tail, which, type ExitInfo } from "../nbdkit-plugin/nbdkit.js";

type Stop = { kind: "signal"; signal: NodeJS.Signals } | { kind: "nbdkit"; exit: ExitInfo };

const SIGNUM: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 };

/** Resolves on the first SIGINT/SIGTERM/SIGHUP; `dispose` removes the handlers. */
function signalWaiter(): { promise: Promise<Stop>; dispose: () => void } {
  let resolve!: (s: Stop) => void;
  const promise = new Promise<Stop>((r) => (resolve = r));
  const handler = (signal: NodeJS.Signals) => resolve({ kind: "signal", signal });
  // SIGHUP too (the terminal went away): without a handler Node dies and leaves nbdkit running.
  const signals: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];
  for (const s of signals) process.on(s, handler);
  return {
    promise,
    dispose: () => {
      for (const s of signals) process.off(s, handler);
    },
  };
}

export async function main(argv: string[]): Promise<number> {
  const args = parseMapArgs(argv);
  try {
    logging.configure({ prog: "virtnbdmap", verbose: args.verbose, nocolor: args.nocolor, logFile: args.logfile });
  } catch (e) {
    if (!(e instanceof LogFileError)) throw e;
    logging.getLogger({ func: "main" }).error(e.message);
    return 1;
  }
  const log = logging.getLogger({ logger: "root", module: "virtnbdmap", func: "main" });
  log.info(versionLine(argv));
  log.info(`Logfile: [${args.logfile}]`);

  // Signals from here on end the run cleanly (exit 0), also while the chain is being indexed.
  const signals = signalWaiter();
  try {
    return await run(args, log, signals.promise);
  } finally {
    signals.dispose();
  }
}

async function run(args: ReturnType<typeof parseMapArgs>, log: Logger, signal: Promise<Stop>): Promise<number> {
  // The checks the original does before mapping (docs/cli.md, "virtnbdmap checks"); all errors are logged, then exit 1.
  const nbdkit = await which("nbdkit");
  if (!nbdkit) log.error("Please install required [nbdkit] utility.");
  if (!args.listenOnly) {
    if (!(await which("qemu-nbd"))) log.error("Please install required [qemu-nbd] utility.");
    for (const e of deviceErrors(args.device)) log.error(e);
  }
  if (nbdkit) {
    try {
      const install = await nbdkitInstall(nbdkit);
      for (const m of await missingModules(install)) log.error(`Failed to locate nbdkit plugin: [${m}]`);
      log.info(`Plugin location: [${install.plugindir}/nbdkit-nbd-plugin.so]`);
    } catch (e) {
      log.error(`Failed to locate nbdkit plugin: [nbd]: ${(e as Error).message}`);
    }
  }
  try {
    cowBlockSize(args.blocksize, 0);
  } catch {
    log.error(`Invalid blocksize [${args.blocksize}]: expected a size in bytes (4096, 64k, 1M).`);
  }
  const files = args.file.split(",");
  if (files.length > 1 && args.readonly) log.error("Device mapping with incrementals doesn't work in readonly mode");
  if (logging.counts.errors > 0) return 1;

  let chain: MappedChain;
  try {
    chain = await loadChain(files, {
      onFile: (m) =>
        log.info(`Parsed [${m.frames}] block offsets from file [${m.given}]${m.compressed ? " (lz4 compressed)" : ""}`),
    });
  } catch (e) {
    if (e instanceof ChainLoadError || e instanceof MapFileError) log.error(e.message);
    else if (e instanceof StreamFormatError) log.error(`Unable to read backup file: ${e.message}`);
    else log.error(`Unable to read backup file: ${(e as Error).message}`);
    return 1;
  }
  const ix = chain.index;
  log.info(
    `Chain of [${chain.members.length}] file(s) for disk [${chain.members[0]!.meta.diskName}]: ` +
      `[${ix.size}] bytes virtual size, [${ix.dataBytes()}] bytes of data in [${ix.rangeCount}] extents`,
  );
  if (!args.listenOnly) log.info(`Target device: ${args.device}`);

  const session = await MapSession.create(chain, {
    exportName: args.exportName,
    listenAddress: args.listenAddress,
    port: args.listenPort,
    threads: args.threads,
    blocksize: args.blocksize,
    readOnly: args.readonly,
    verbose: args.verbose,
    hexdump: args.hexdump,
    log: (m) => log.debug(`Helper: ${m}`),
  });
  let attached: string | null = null;
  const teardown = async (): Promise<void> => {
    if (attached) {
      const r = await detachDevice(attached);
      if (r.code !== 0) log.error(`Failed to disconnect device [${attached}]: ${r.stderr}`);
      attached = null;
    }
    await session.stop();
    if (args.verbose) log.info(`Keeping nbdkit logfile: [${session.nbdkitLog}]`);
    else log.info(`Removing temporary directory: [${session.tmpDir}]`);
  };

  try {
    const started = session.start().then(() => null);
    const first = await Promise.race([started, signal]);
    if (first) {
      await started.catch(() => undefined);
      log.info(`Received signal: [${SIGNUM[first.kind === "signal" ? first.signal : "SIGTERM"]}]`);
      await teardown();
      return 0;
    }
  } catch (e) {
    log.error(`Failed to start nbdkit process: [${(e as Error).message}]`);
    await teardown();
    return 1;
  }
  log.info(`Started nbdkit process pid: [${session.nbdkitPid}], Logfile: [${session.nbdkitLog}]`);
  const nbdkitGone = session.nbdkitExited!.then((exit): Stop => ({ kind: "nbdkit", exit: exit as ExitInfo }));

  const host = connectHost(args.listenAddress);
  const uri = `nbd://${host}:${args.listenPort}/${args.exportName}`;
  if (args.listenOnly) {
    log.info(`Serving backup chain on ${uri}${args.readonly ? " (read-only)" : ""}`);
  } else {
    if (args.readonly) {
      log.warning("Device will be mapped readonly without cow.");
      log.warning("Mounting will only work with '-o norecovery,ro'");
    }
    const r = await attachDevice({ device: args.device, uri, readOnly: args.readonly, log });
    if (r.code !== 0) {
      log.error("Failed to map device:");
      log.error(`Stderr: [${r.stderr}]`);
      await teardown();
      return 1;
    }
    attached = args.device;
    log.info(`Done mapping backup image to [${args.device}]`);
  }
  log.info("Press CTRL+C to disconnect");

  const stop = await Promise.race([signal, nbdkitGone]);
  if (stop.kind === "nbdkit") {
    log.error(`nbdkit process exited unexpectedly (${describeExit(stop.exit)}): ${await tail(session.nbdkitLog)}`);
    await teardown();
    return 1;
  }
  log.info(`Received signal: [${SIGNUM[stop.signal] ?? stop.signal}]`);
  await teardown();
  return 0;
}
