/** `--metrics-file`: the run's metrics written atomically at its end (docs/cli.md, "Metrics"). */
import { open, readFile, rename, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import { formatMetrics, previousSuccess, type RunMetrics } from "../report/metrics.js";
import { fsyncDirectory, partialPath } from "../storage/durable.js";

export async function writeRunMetrics(path: string, run: Omit<RunMetrics, "lastSuccess">): Promise<void> {
  const before = await readFile(path, "utf8").catch(() => "");
  const lastSuccess = run.exitCode === 0 ? run.started : previousSuccess(before);
  // A new file beside the old, synced, renamed over it: the collector never reads half a file.
  // Readable by all: node_exporter does not run as root.
  const tmp = partialPath(path);
  try {
    const fh = await open(tmp, "w", 0o644);
    try {
      await fh.writeFile(formatMetrics({ ...run, lastSuccess }));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fsyncDirectory(dirname(path));
}
