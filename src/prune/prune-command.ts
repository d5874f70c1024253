/**
 * `virtnbdprune` after its options (docs/prune.md): find the chains, weigh each domain's (and
 * `--chain`'s) chains against the keep rules, then remove what goes, domain by domain under the
 * domain's backup lock, each chain's own libvirt checkpoints first. Returns the exit code.
 */
import { describeLockOwner, DomainLock, lockDirectory } from "../connect/domain-lock.js";
import { Connection } from "../libvirt/connection.js";
import { EXIT_TEMPFAIL, exitCodeFromCounts } from "../report/exit-code.js";
import { runEvents } from "../report/events.js";
import type { Logger } from "../report/log.js";
import { oneLine } from "../util/one-line.js";
import { describeGroup, discoverChains, groupKey, type Chain } from "./chains.js";
import { removeChainCheckpoints } from "./libvirt-checkpoints.js";
import type { PruneArgs } from "./options.js";
import { finishLeftover, removeChain } from "./remove-chain.js";
import { selectKeep, type Decision } from "./retention.js";

interface Weighed {
  chain: Chain;
  decision: Decision;
}

/** The rules' decisions, then what overrides them: a held chain and the newest chain always stay. */
export function weighGroup(chains: Chain[], args: PruneArgs): Weighed[] {
  const decisions = selectKeep(chains.map((c) => ({ id: c.location, time: c.time })), args.keep);
  const newest = chains.reduce((a, b) => (b.time > a.time ? b : a));
  return chains
    .map((chain) => {
      let decision = decisions.get(chain.location)!;
      if (chain.held) decision = { keep: true, reason: chain.held };
      else if (chain === newest && !decision.keep) decision = { keep: true, reason: "the newest chain" };
      return { chain, decision };
    })
    .sort((a, b) => b.chain.time.getTime() - a.chain.time.getTime());
}

/** Local `YYYY-MM-DD<sep>HH:MM:SS`. */
const stamp = (d: Date, sep = " "): string => {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}${sep}${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
};

/** The decision on a chain: a log line and a `chain` event. */
function report(w: Weighed, dryRun: boolean, log: Logger): void {
  const { chain, decision } = w;
  const what = `[${chain.location}] (${stamp(chain.time)}, ${chain.points} backup${chain.points === 1 ? "" : "s"})`;
  const verb = decision.keep ? "Keep" : dryRun ? "Would remove" : "Remove";
  log.info(`${verb} ${what}: ${decision.reason}`);
  runEvents.chain({
    location: chain.location,
    domain: chain.domain,
    chain: chain.chainName,
    started: stamp(chain.time, "T"),
    backups: chain.points,
    decision: decision.keep ? "keep" : "remove",
    reason: decision.reason,
    dryRun,
  });
}

/** Opens libvirt once, on first need; null (after one WARNING) when it cannot. */
class LazyConnection {
  private conn: Connection | null | undefined;
  constructor(
    private readonly uri: string,
    private readonly log: Logger,
  ) {}
  async get(): Promise<Connection | null> {
    if (this.conn !== undefined) return this.conn;
    try {
      this.conn = await Connection.open(this.uri);
    } catch (e) {
      this.log.warning(`Unable to connect to libvirt [${this.uri}]: the checkpoints of removed chains are left (${oneLine((e as Error).message)}).`);
      this.conn = null;
    }
    return this.conn;
  }
  async close(): Promise<void> {
    await this.conn?.close();
  }
}

async function removeGroup(doomed: Chain[], args: PruneArgs, libvirt: LazyConnection, log: Logger): Promise<"done" | "busy"> {
  const domain = doomed[0]!.domain;
  let lock: DomainLock | null = null;
  if (domain !== null) {
    const me = { pid: process.pid, started: new Date().toISOString(), output: `virtnbdprune ${args.paths.join(" ")}` };
    const got = await DomainLock.acquire(lockDirectory(), args.uri, domain, me);
    if (!(got instanceof DomainLock)) {
      log.warning(`A backup of domain [${domain}] is running${describeLockOwner(got.heldBy)}: its chains are left alone, try again when it has ended.`);
      return "busy";
    }
    lock = got;
  }
  try {
    for (const chain of doomed) {
      const conn = chain.checkpoints.length > 0 && chain.created.size > 0 ? await libvirt.get() : null;
      if (conn) await removeChainCheckpoints(conn, chain, log);
      await removeChain(chain, (step) => log.debug(`Prune step: ${step}`));
      log.info(`Removed chain [${chain.location}].`);
      runEvents.chainRemoved({ location: chain.location, domain: chain.domain });
    }
  } finally {
    await lock?.release();
  }
  return "done";
}

async function finishLeftovers(leftovers: string[], dryRun: boolean, log: Logger): Promise<void> {
  for (const path of leftovers) {
    if (dryRun) {
      log.info(`Would finish removing [${path}], left by an interrupted prune.`);
      continue;
    }
    await finishLeftover(path);
    log.info(`Finished removing [${path}], left by an interrupted prune.`);
  }
}

export async function runPrune(args: PruneArgs, log: Logger): Promise<number> {
  let found;
  try {
    found = await discoverChains(args.paths);
  } catch (e) {
    log.error(`Unable to read backups: ${oneLine((e as Error).message)}`);
    return 1;
  }
  for (const note of found.notes) log.warning(note);
  await finishLeftovers(found.leftovers, args.dryRun, log);
  const groups = new Map<string, Chain[]>();
  for (const c of found.chains) groups.set(groupKey(c), [...(groups.get(groupKey(c)) ?? []), c]);
  const libvirt = new LazyConnection(args.uri, log);
  let busy = false;
  let removed = 0;
  try {
    for (const chains of groups.values()) {
      log.info(`${describeGroup(chains[0]!)}: [${chains.length}] chain${chains.length === 1 ? "" : "s"}`);
      const weighed = weighGroup(chains, args);
      for (const w of weighed) report(w, args.dryRun, log);
      const doomed = weighed.filter((w) => !w.decision.keep).map((w) => w.chain);
      if (args.dryRun || doomed.length === 0) continue;
      if ((await removeGroup(doomed, args, libvirt, log)) === "busy") busy = true;
      else removed += doomed.length;
    }
  } catch (e) {
    log.error(`Prune failed: ${oneLine((e as Error).message)}`);
    return 1;
  } finally {
    await libvirt.close();
  }
  log.info(args.dryRun ? `Dry run: nothing changed.` : `Removed [${removed}] of [${found.chains.length}] chains.`);
  const code = exitCodeFromCounts(log.tally);
  return code === 0 && busy ? EXIT_TEMPFAIL : code;
}
