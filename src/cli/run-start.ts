/**
 * What each command's `run-start` event says (docs/events.md, "run-start"): the run's subject
 * and a summary of the options that shape it. Never the argv: it may hold a password.
 */
import type { RunStartFields } from "../report/events.js";
import type { BackupArgs, MapArgs, PruneArgs, RestoreArgs } from "./args.js";
import { resolveAction } from "../restore/options.js";

export function backupRunStart(a: BackupArgs): RunStartFields {
  return {
    domain: a.domain,
    level: a.level,
    output: a.output,
    options: {
      type: a.type,
      compress: a.compress,
      raw: a.raw,
      include: a.include,
      exclude: a.exclude,
      chain: a.chain || null,
      check: a.check,
      uri: a.uri,
      worker: a.worker,
      strict: a.strict,
      startonly: a.startonly,
      killonly: a.killonly,
      printonly: a.printonly,
      threshold: a.threshold,
    },
  };
}

export function restoreRunStart(a: RestoreArgs): RunStartFields {
  const action = resolveAction(a);
  return {
    action,
    input: a.input,
    ...(action === "restore" ? { output: a.output } : {}),
    options: {
      until: a.until,
      sequence: a.sequence,
      disk: a.disk,
      raw: a.raw,
      adjustConfig: a.adjustConfig,
      define: a.define,
      name: a.name,
      toRaw: a.toRaw,
      uri: a.uri,
    },
  };
}

export function mapRunStart(a: MapArgs): RunStartFields {
  return {
    input: a.file,
    options: {
      device: a.listenOnly ? null : a.device,
      listenOnly: a.listenOnly,
      listenAddress: a.listenAddress,
      listenPort: a.listenPort,
      exportName: a.exportName,
      readonly: a.readonly,
    },
  };
}

export function pruneRunStart(a: PruneArgs): RunStartFields {
  return {
    input: a.paths.join(","),
    options: {
      keepLast: a.keep.last,
      keepHourly: a.keep.hourly,
      keepDaily: a.keep.daily,
      keepWeekly: a.keep.weekly,
      keepMonthly: a.keep.monthly,
      keepYearly: a.keep.yearly,
      dryRun: a.dryRun,
      uri: a.uri,
    },
  };
}
