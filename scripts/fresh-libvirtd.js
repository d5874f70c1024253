// A new libvirtd (scripts/run-tests.js FRESH_LIBVIRTD, and tests of a libvirtd restart): only
// when we are root and libvirtd runs as a plain daemon (not under systemd). Returns whether it
// restarted one. Domains keep running across the restart.
import { spawnSync } from "node:child_process";

const sh = (cmd, args) => spawnSync(cmd, args, { stdio: "ignore", timeout: 20_000 }).status === 0;
const sleepMs = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

export function freshLibvirtd() {
  if (process.getuid?.() !== 0 || process.env["VNBT_KEEP_LIBVIRTD"] || !sh("pgrep", ["-x", "libvirtd"])) return false;
  sh("pkill", ["-x", "libvirtd"]);
  for (let i = 0; i < 20 && sh("pgrep", ["-x", "libvirtd"]); i++) sleepMs(250);
  if (sh("pgrep", ["-x", "libvirtd"])) sh("pkill", ["-9", "-x", "libvirtd"]);
  for (let i = 0; i < 20 && sh("pgrep", ["-x", "libvirtd"]); i++) sleepMs(250);
  sh("rm", ["-f", "/var/run/libvirtd.pid", "/run/libvirtd.pid"]);
  sh("libvirtd", ["-d"]);
  for (let i = 0; i < 60 && !sh("virsh", ["-c", "qemu:///system", "version"]); i++) sleepMs(250);
  return true;
}

// `node scripts/fresh-libvirtd.js`: exit 0 when restarted, 3 when this host does not allow it.
if (process.argv[1] && new URL(import.meta.url).pathname === process.argv[1]) process.exit(freshLibvirtd() ? 0 : 3);
