/**
 * Per-disk progress bars on stderr, stacked, like upstream's tqdm bars (one
 * per disk; a finished one leaves its final line with the average rate). Shown only when stderr is a
 * TTY and neither `--noprogress` nor `--quiet` is given; otherwise every bar
 * is a no-op.
 *
 *   sda:  45%|███████████▍             | 1.2GiB/2.7GiB [00:10<00:12, 120.0MiB/s]
 *
 * Log lines must not garble the bars: give the `Progress` to the logger as its
 * console (`logging.setConsole(progress)`); `write()` clears the bars, prints
 * the text and redraws them in a single synchronous write.
 *
 * Own implementation rather than cli-progress: its MultiBar buffers log text
 * until the next timer redraw and drops that buffer on stop(), so a line
 * logged just before a disk finishes or the process exits may never reach
 * stderr; and its bars keep a ref'd timer and optional SIGINT hooks that
 * would interfere with the commands' own signal handling.
 */
import { formatDuration, humanize } from "./humanize.js";

export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  /** `-n/--noprogress` */
  noprogress?: boolean;
  /** `--quiet` implies no progress */
  quiet?: boolean;
  /** default `process.stderr` */
  stream?: ProgressStream;
  /** clock in milliseconds, for tests */
  now?: () => number;
  /** minimum time between redraws caused by updates (ms), default 100 */
  minRedrawMs?: number;
  /** periodic redraw while bars are shown, so time and ETA move on a stall (ms), default 1000; 0 = none */
  refreshMs?: number;
}

/** One disk's bar. All methods are no-ops when progress is off. */
export interface DiskProgress {
  /** set bytes done */
  update(done: number): void;
  /** add bytes done */
  increment(bytes: number): void;
  /** change the total (bytes) */
  setTotal(total: number): void;
  /** remove the bar (the disk is finished or failed) */
  done(): void;
}

const NOOP_BAR: DiskProgress = {
  update() {},
  increment() {},
  setTotal() {},
  done() {},
};

interface BarState {
  name: string;
  total: number;
  done: number;
  start: number;
  samples: Array<[number, number]>;
}

const RATE_WINDOW_MS = 10_000;
const BLOCKS = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];

/** Render one bar line of at most `width` columns. Exported for tests. */
export function renderBar(
  b: { name: string; total: number; done: number },
  elapsedMs: number,
  rate: number | null,
  width: number,
): string {
  const total = Math.max(0, b.total);
  const done = Math.min(Math.max(0, b.done), total > 0 ? total : Number.POSITIVE_INFINITY);
  const frac = total > 0 ? done / total : 0;
  const pct = `${String(Math.floor(frac * 100)).padStart(3)}%`;
  const eta = rate && rate > 0 && total > 0 ? formatDuration((total - done) / rate) : "?";
  const rateText = rate === null ? "?B/s" : `${humanize(rate)}/s`;
  const prefix = `${b.name}: ${pct}|`;
  const suffix = `| ${humanize(done)}/${humanize(total)} [${formatDuration(elapsedMs / 1000)}<${eta}, ${rateText}]`;
  const barWidth = width - prefix.length - suffix.length;
  if (barWidth < 5) {
    const short = `${b.name}: ${pct} ${humanize(done)}/${humanize(total)}`;
    return short.slice(0, Math.max(0, width));
  }
  const cells = frac * barWidth;
  const full = Math.floor(cells);
  const partial = full < barWidth ? BLOCKS[Math.floor((cells - full) * 8)]! : "";
  const bar = ("█".repeat(full) + partial).padEnd(barWidth, " ");
  return prefix + bar + suffix;
}

export class Progress implements ProgressStream {
  /** whether bars are drawn at all */
  readonly enabled: boolean;
  private readonly stream: ProgressStream;
  private readonly now: () => number;
  private readonly minRedrawMs: number;
  private readonly refreshMs: number;
  private bars: BarState[] = [];
  private drawn = 0;
  private lastDraw = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | null = null;

  constructor(opts: ProgressOptions = {}) {
    this.stream = opts.stream ?? process.stderr;
    this.enabled = !opts.noprogress && !opts.quiet && this.stream.isTTY === true;
    this.now = opts.now ?? (() => performance.now());
    this.minRedrawMs = opts.minRedrawMs ?? 100;
    this.refreshMs = opts.refreshMs ?? 1000;
  }

  /** Bars currently shown. */
  get active(): boolean {
    return this.drawn > 0;
  }

  /** A new bar for `name` (the disk target) with `total` bytes, stacked below the others. */
  bar(name: string, total: number): DiskProgress {
    if (!this.enabled) return NOOP_BAR;
    const t = this.now();
    const state: BarState = { name, total, done: 0, start: t, samples: [[t, 0]] };
    this.bars.push(state);
    this.startTimer();
    this.redraw();
    return {
      update: (done) => this.set(state, done),
      increment: (bytes) => this.set(state, state.done + bytes),
      setTotal: (total) => {
        state.total = total;
        this.maybeRedraw();
      },
      done: () => this.remove(state),
    };
  }

  /**
   * Print text (e.g. a log line, ending with a newline) above the bars; with
   * no bars shown, it goes straight to the stream.
   */
  write(text: string): void {
    if (this.drawn === 0) {
      this.stream.write(text);
      return;
    }
    const body = text.endsWith("\n") ? text : text + "\n";
    this.stream.write(this.clearSeq() + body + this.barsText());
    this.lastDraw = this.now();
  }

  /** Remove all bars from the screen and stop refreshing. */
  stop(): void {
    this.bars = [];
    this.stopTimer();
    if (this.drawn > 0) {
      this.stream.write(this.clearSeq());
      this.drawn = 0;
    }
  }

  private set(state: BarState, done: number): void {
    state.done = done;
    const t = this.now();
    const last = state.samples[state.samples.length - 1]!;
    if (t - last[0] >= 100) {
      state.samples.push([t, done]);
      while (state.samples.length > 2 && t - state.samples[0]![0] > RATE_WINDOW_MS) state.samples.shift();
    }
    this.maybeRedraw();
  }

  /** A finished bar leaves its final line (average rate over the whole transfer) above the others. */
  private remove(state: BarState): void {
    const i = this.bars.indexOf(state);
    if (i < 0) return;
    const t = this.now();
    const elapsed = t - state.start;
    const average = elapsed > 0 ? state.done / (elapsed / 1000) : null;
    const final = renderBar(state, elapsed, average, this.width()) + "\n";
    this.bars.splice(i, 1);
    if (this.bars.length === 0) this.stopTimer();
    this.stream.write(this.clearSeq() + final + this.barsText());
    this.lastDraw = t;
  }

  private width(): number {
    return Math.max(20, (this.stream.columns ?? 80) - 1);
  }

  private maybeRedraw(): void {
    if (this.now() - this.lastDraw >= this.minRedrawMs) this.redraw();
  }

  private redraw(): void {
    if (this.bars.length === 0) return;
    this.stream.write(this.clearSeq() + this.barsText());
    this.lastDraw = this.now();
  }

  /** Move to the start of the first bar line and clear to the end of the screen. */
  private clearSeq(): string {
    if (this.drawn === 0) return "";
    return "\r" + (this.drawn > 1 ? `\x1b[${this.drawn - 1}A` : "") + "\x1b[J";
  }

  private rate(b: BarState, t: number): number | null {
    const first = b.samples[0]!;
    const dt = (t - first[0]) / 1000;
    if (dt < 0.2) return null;
    return (b.done - first[1]) / dt;
  }

  /** The bar lines (no trailing newline; the cursor stays at the end of the last line). */
  private barsText(): string {
    const t = this.now();
    const width = this.width();
    const lines = this.bars.map((b) => renderBar(b, t - b.start, this.rate(b, t), width));
    this.drawn = lines.length;
    return lines.join("\n");
  }

  private startTimer(): void {
    if (this.timer || this.refreshMs <= 0) return;
    this.timer = setInterval(() => this.redraw(), this.refreshMs);
    this.timer.unref();
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
