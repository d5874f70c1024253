/**
 * A backup run as Prometheus metrics in the text exposition format (docs/cli.md, "Metrics"),
 * for node_exporter's textfile collector: one gauge family per fact, labelled by domain and
 * level as given.
 */
export interface RunMetrics {
  domain: string;
  level: string;
  /** Unix seconds. */
  started: number;
  durationSeconds: number;
  /** Data bytes saved (all disks). */
  bytes: number;
  exitCode: number;
  /** Unix seconds of the last run that exited 0 (this one or an earlier one), 0 when none. */
  lastSuccess: number;
}

const FAMILIES: [name: string, help: string, value: (m: RunMetrics) => number][] = [
  ["virtnbdbackup_last_run_timestamp_seconds", "Start of the last backup run, unix seconds.", (m) => m.started],
  ["virtnbdbackup_last_success_timestamp_seconds", "Start of the last backup run that exited 0, unix seconds (0: none yet).", (m) => m.lastSuccess],
  ["virtnbdbackup_last_run_duration_seconds", "Duration of the last backup run.", (m) => m.durationSeconds],
  ["virtnbdbackup_last_run_bytes", "Disk data saved by the last backup run.", (m) => m.bytes],
  ["virtnbdbackup_last_run_exit_code", "Exit code of the last backup run (0 ok, 1 error, 2 warnings with --strict, 75 busy).", (m) => m.exitCode],
];

const escapeLabel = (v: string): string => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');

export function formatMetrics(m: RunMetrics): string {
  const labels = `{domain="${escapeLabel(m.domain)}",level="${escapeLabel(m.level)}"}`;
  return FAMILIES.map(([name, help, value]) => `# HELP ${name} ${help}\n# TYPE ${name} gauge\n${name}${labels} ${value(m)}\n`).join("");
}

/** The last-success timestamp a previous file of ours recorded, 0 when none. */
export function previousSuccess(text: string): number {
  const m = /^virtnbdbackup_last_success_timestamp_seconds\{[^}]*\} (\d+(?:\.\d+)?)$/m.exec(text);
  return m ? Number(m[1]) : 0;
}
