/** A logger for unit tests that records each line as `LEVEL message` (debug lines are dropped). */
export interface RecordingLog {
  lines: string[];
  debug(m: unknown): void;
  info(m: unknown): void;
  warning(m: unknown): void;
  error(m: unknown): void;
  critical(m: unknown): void;
}

export function recordingLog(): RecordingLog {
  const lines: string[] = [];
  const record = (level: string) => (m: unknown) => void lines.push(`${level} ${String(m)}`);
  return { lines, debug: () => undefined, info: record("INFO"), warning: record("WARNING"), error: record("ERROR"), critical: record("CRITICAL") };
}
