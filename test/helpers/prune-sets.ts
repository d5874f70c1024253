/**
 * Synthetic backup chains for prune tests: a full and incs of one small disk, with the dates,
 * checkpoint names and saved checkpoint XMLs prune reads, in the layouts it must understand
 * (targets with generations, monthly folders, zip archives). Not restorable (no vmconfig
 * disks); the tests that restore use real backups (prune-live.test.ts).
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import yazl from "yazl";
import { createWriteStream } from "node:fs";
import { once } from "node:events";
import { buildStream, pattern } from "./streams.js";

const MiB = 1024 * 1024;

export interface SyntheticChain {
  domain: string;
  /** Local start time of the full, `YYYY-MM-DD HH:MM`. */
  start: string;
  /** Number of incs after the full (one hour apart). */
  incs?: number;
  /** Index of the full's checkpoint; incs count on. */
  first?: number;
  /** `--chain` name. */
  chain?: string;
  /** Number of diffs after the incs (half an hour after the last inc, then hourly). */
  diffs?: number;
}

const p2 = (n: number) => String(n).padStart(2, "0");
function localIso(d: Date): string {
  return `${d.getFullYear()}-${p2(d.getMonth() + 1)}-${p2(d.getDate())}T${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())}.123456`;
}
function parseStart(s: string): Date {
  const [d, t = "00:00"] = s.split(" ");
  const [y, m, day] = d!.split("-").map(Number);
  const [h, min] = t.split(":").map(Number);
  return new Date(y!, m! - 1, day!, h!, min!);
}

const checkpointName = (c: SyntheticChain, i: number) => (c.chain ? `virtnbdbackup.${c.chain}.${i}` : `virtnbdbackup.${i}`);
const checkpointXml = (name: string, created: number) =>
  `<domaincheckpoint>\n  <name>${name}</name>\n  <creationTime>${created}</creationTime>\n  <disks>\n    <disk name='sda' checkpoint='bitmap'/>\n  </disks>\n</domaincheckpoint>\n`;

/** The files of a chain: name → content. */
export async function chainFiles(c: SyntheticChain): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  const t0 = parseStart(c.start);
  const first = c.first ?? 0;
  const names: string[] = [];
  for (let i = 0; i <= (c.incs ?? 0); i++) {
    const when = new Date(t0.getTime() + i * 3_600_000);
    const name = checkpointName(c, first + i);
    names.push(name);
    const stream = await buildStream([{ start: i * 64 * 1024, data: pattern(64 * 1024, first + i) }], {
      virtualSize: MiB,
      meta: { date: localIso(when), checkpointName: name, parentCheckpoint: i === 0 ? "" : names[i - 1]!, incremental: i > 0 },
    });
    const file = i === 0 ? "sda.full.data" : `sda.inc.${name}.data`;
    files.set(file, stream);
    files.set(`${file}.chksum`, Buffer.from("1\n"));
    files.set(`checkpoints/${name}.xml`, Buffer.from(checkpointXml(name, Math.floor(when.getTime() / 1000))));
    files.set(`vmconfig.${name}.xml`, Buffer.from(`<domain type='kvm'>\n  <name>${c.domain}</name>\n</domain>\n`));
  }
  const last = names.at(-1)!;
  for (let j = 0; j < (c.diffs ?? 0); j++) {
    const when = new Date(t0.getTime() + (c.incs ?? 0) * 3_600_000 + 1_800_000 + j * 3_600_000);
    const stream = await buildStream([{ start: (40 + j) * 64 * 1024, data: pattern(64 * 1024, 100 + j) }], {
      virtualSize: MiB,
      meta: { date: localIso(when), checkpointName: last, parentCheckpoint: last, incremental: true },
    });
    files.set(`sda.diff.${Math.floor(when.getTime() / 1000)}.data`, stream);
  }
  files.set(`${c.domain}.cpt`, Buffer.from(JSON.stringify(names)));
  return files;
}

/** Writes a chain as a directory set into `dir`. */
export async function writeChainDir(dir: string, c: SyntheticChain): Promise<void> {
  await mkdir(join(dir, "checkpoints"), { recursive: true });
  for (const [name, content] of await chainFiles(c)) await writeFile(join(dir, name), content);
}

/**
 * Writes a chain as zip archives into `dir`, one per backup as `-o -` makes them
 * (`<prefix>-0-full.zip`, `<prefix>-1-inc.zip`, …); returns their paths.
 */
export async function writeChainZips(dir: string, prefix: string, c: SyntheticChain): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const files = await chainFiles(c);
  const data = [...files.keys()].filter((n) => n.endsWith(".data"));
  const out: string[] = [];
  for (const [i, d] of data.entries()) {
    const name = data.length > 0 && i === 0 ? "full" : "inc";
    const path = join(dir, `${prefix}-${i}-${name}.zip`);
    const zip = new yazl.ZipFile();
    const checkpoint = i === 0 ? checkpointName(c, c.first ?? 0) : /inc\.(.+)\.data$/.exec(d)![1]!;
    for (const entry of [d, `vmconfig.${checkpoint}.xml`, `${c.domain}.cpt`, `checkpoints/${checkpoint}.xml`]) {
      zip.addBuffer(files.get(entry)!, entry, { compress: false });
    }
    const sink = createWriteStream(path);
    zip.outputStream.pipe(sink);
    zip.end();
    await once(sink, "finish");
    out.push(path);
  }
  return out;
}
