import { test } from "node:test";
import assert from "node:assert/strict";
import { Progress, renderBar } from "../../src/report/progress.js";
import { LogManager } from "../../src/report/log.js";

function fakeStream(isTTY: boolean, columns = 80) {
  const chunks: string[] = [];
  return { isTTY, columns, chunks, write: (s: string) => void chunks.push(s), text: () => chunks.join("") };
}

/**
 * A tiny terminal model: applies \r, \n, ESC[nA (up), ESC[J (clear below) to
 * a screen of lines, so tests can check what a user would see.
 */
function screen(output: string): string[] {
  const lines: string[] = [""];
  let row = 0;
  let col = 0;
  for (let i = 0; i < output.length; i++) {
    const ch = output[i]!;
    if (ch === "\x1b") {
      const m = /^\x1b\[(\d*)([AJ])/.exec(output.slice(i))!;
      assert.ok(m, `unknown escape at ${i}`);
      if (m[2] === "A") row = Math.max(0, row - Number(m[1] || 1));
      else {
        lines[row] = lines[row]!.slice(0, col);
        lines.length = row + 1;
      }
      i += m[0].length - 1;
    } else if (ch === "\r") col = 0;
    else if (ch === "\n") {
      row++;
      col = 0;
      if (lines.length <= row) lines.push("");
    } else {
      const l = lines[row]!.padEnd(col, " ");
      lines[row] = l.slice(0, col) + ch + l.slice(col + 1);
      col++;
    }
  }
  return lines;
}

test("off when stderr is not a TTY, with --noprogress or --quiet", () => {
  for (const [opts, tty] of [
    [{}, false],
    [{ noprogress: true }, true],
    [{ quiet: true }, true],
  ] as const) {
    const s = fakeStream(tty);
    const p = new Progress({ ...opts, stream: s, refreshMs: 0 });
    assert.equal(p.enabled, false);
    const bar = p.bar("sda", 1000);
    bar.update(500);
    bar.increment(10);
    bar.done();
    assert.equal(s.chunks.length, 0);
    p.write("log line\n"); // passes straight through
    assert.deepEqual(s.chunks, ["log line\n"]);
    assert.equal(p.active, false);
    p.stop();
  }
});

test("enabled on a TTY: stacked bars with name, sizes, rate and ETA", () => {
  let t = 0;
  const s = fakeStream(true, 100);
  const p = new Progress({ stream: s, now: () => t, refreshMs: 0 });
  assert.equal(p.enabled, true);
  const sda = p.bar("sda", 4 * 1024 ** 3);
  const vdb = p.bar("vdb", 1024 ** 3);
  t = 2000;
  sda.update(1024 ** 3);
  t = 4000;
  sda.update(2 * 1024 ** 3);
  t = 4100; // redraws are throttled to one per 100 ms
  vdb.increment(256 * 1024 ** 2);
  const shown = screen(s.text());
  assert.equal(shown.length, 2);
  assert.match(shown[0]!, /^sda:  50%\|█+ +\| 2\.0GiB\/4\.0GiB \[00:04<00:04, 499\.5MiB\/s\]$/); // rate over elapsed time, so it drops on a stall
  assert.match(shown[1]!, /^vdb:  25%\|█+[▏▎▍▌▋▊▉]? +\| 256\.0MiB\/1\.0GiB \[00:04<00:12, 62\.4MiB\/s\]$/);
  for (const l of shown) assert.ok(l.length <= 99, l);
  assert.ok(p.active);
  p.stop();
});

test("log lines are printed above the bars, bars stay intact", () => {
  let t = 0;
  const s = fakeStream(true, 80);
  const p = new Progress({ stream: s, now: () => t, refreshMs: 0 });
  const m = new LogManager();
  m.configure({ prog: "virtnbdbackup", stderr: s, nocolor: true, clock: () => new Date(2026, 10, 26, 4, 36, 38) });
  m.setConsole(p);
  const log = m.getLogger();
  log.info("before bars");
  const a = p.bar("sda", 1000);
  const b = p.bar("sdb", 1000);
  t = 500;
  a.update(500);
  log.info("Got 12 extents to backup.");
  t = 1000;
  b.update(1000);
  log.child({ thread: "sdb" }).info("Backup of disk [sdb] finished");
  const shown = screen(s.text());
  assert.deepEqual(shown.slice(0, 3), [
    "[2026-11-26 04:36:38] INFO root virtnbdbackup - main [main]: before bars",
    "[2026-11-26 04:36:38] INFO root virtnbdbackup - main [main]: Got 12 extents to backup.",
    "[2026-11-26 04:36:38] INFO root virtnbdbackup - main [sdb]: Backup of disk [sdb] finished",
  ]);
  assert.equal(shown.length, 5);
  assert.match(shown[3]!, /^sda:  50%\|/);
  assert.match(shown[4]!, /^sdb: 100%\|█+\|/);
  // a finished disk leaves its final line (average rate, no "?") above the bars still running
  b.done();
  const afterB = screen(s.text());
  assert.equal(afterB.length, 5);
  assert.match(afterB[3]!, /^sdb: 100%\|█+\| 1000\.0B\/1000\.0B \[00:01<00:00, 1000\.0B\/s\]$/);
  assert.match(afterB[4]!, /^sda:  50%\|/);
  a.done();
  assert.equal(p.active, false);
  const final = screen(s.text());
  assert.match(final[4]!, /^sda:  50%\|█+[▏▎▍▌▋▊▉]? +\| 500\.0B\/1000\.0B \[00:01<00:01, 500\.0B\/s\]$/);
  assert.deepEqual(final.slice(5), [""]);
  log.info("after");
  assert.equal(screen(s.text())[5], "[2026-11-26 04:36:38] INFO root virtnbdbackup - main [main]: after");
});

test("updates are throttled", () => {
  let t = 0;
  const s = fakeStream(true);
  const p = new Progress({ stream: s, now: () => t, refreshMs: 0, minRedrawMs: 100 });
  const bar = p.bar("sda", 1_000_000);
  const before = s.chunks.length;
  for (let i = 0; i < 1000; i++) bar.increment(10); // same instant: no redraws
  assert.equal(s.chunks.length, before);
  t = 150;
  bar.increment(10);
  assert.equal(s.chunks.length, before + 1);
  p.stop();
});

test("renderBar fits the width and degrades on narrow terminals", () => {
  const line = renderBar({ name: "sda", total: 2048, done: 1024 }, 61_000, 512, 60);
  assert.equal(line.length, 60);
  assert.match(line, /^sda:  50%\|█+[▏▎▍▌▋▊▉]? *\| 1\.0KiB\/2\.0KiB \[01:01<00:02, 512\.0B\/s\]$/);
  assert.equal(renderBar({ name: "sda", total: 2048, done: 0 }, 0, null, 40).length <= 40, true);
  assert.equal(renderBar({ name: "sda", total: 100, done: 5 }, 0, null, 25), "sda:   5% 5.0B/100.0B");
  const unknown = renderBar({ name: "vda", total: 0, done: 0 }, 0, null, 80);
  assert.match(unknown, /^vda:   0%\| +\| 0\.0B\/0\.0B \[00:00<\?, \?B\/s\]$/);
});
