/**
 * `npm run bench [-- name ...]`: runs the benchmarks one after another (never two at once:
 * they compete for the same cores), all of them by default. Extra `--flags` go to each.
 *
 *   format          stream writer/reader, lz4 vs python-lz4
 *   nbd-read        NBD read throughput vs nbdcopy, extent enumeration of a 1 TiB image
 *   map-read        virtnbdmap reads vs the original's nbdkit plugin
 *   backup-restore  full / -z backup and restore vs the Python tool, nbdcopy, qemu-img
 *   live-restore    virtnbdrestore --live of a real Linux guest: time to its first console line, copy vs a normal restore
 *   multi-disk      a 2-disk domain: -w 1 vs -w 2 (plain, -z; local disks, disks on slow stores) vs the Python tool, nbdcopy
 *   memory          peak RSS of backups and restores (4/16/64 GiB disks, chains of 30 incs) vs the Python tool, nbdcopy
 *   chain           a full + 30 incs vs a full of the same data: restore (ours, Python), virtnbdmap open and read
 *   chain-runs      an inc with nothing changed and the next chain's full after chains of 1, 30, 100 checkpoints vs the Python tool
 *   remote-delay    remote (qemu+ssh) full backup on loopback and through a 20 ms round-trip proxy vs the Python tool
 */
import { spawnSync } from "node:child_process";

const ALL = ["format", "nbd-read", "map-read", "backup-restore", "live-restore", "multi-disk", "memory", "chain", "chain-runs", "remote-delay"];
const args = process.argv.slice(2);
const names = args.filter((a) => !a.startsWith("--"));
const flags = args.filter((a) => a.startsWith("--"));
const unknown = names.filter((n) => !ALL.includes(n));
if (unknown.length > 0) {
  console.error(`unknown benchmark: ${unknown.join(", ")} (known: ${ALL.join(", ")})`);
  process.exit(2);
}
let failed = 0;
for (const name of names.length > 0 ? names : ALL) {
  console.log(`\n== ${name}`);
  const r = spawnSync(process.execPath, ["--import", "tsx", `bench/${name}.ts`, ...flags], { stdio: "inherit" });
  if (r.status !== 0) failed++;
}
process.exit(failed > 0 ? 1 : 0);
