#!/usr/bin/env bash
# End-to-end demo on a throwaway domain (as root, fresh Debian/Ubuntu is fine):
# set up the host, build, create a small TCG domain with an ext4 disk holding a marker file,
# then full backup → change the disk → incremental (lz4) → verify → restore → compare → live
# restore (a copy runs at once from the backup while its disk moves into place) → retention →
# instant recovery (map the chain and read the marker file from it). Cleans up on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step "Host setup (packages, libvirtd)"
scripts/setup-host.sh
if [ ! -d node_modules ]; then npm ci --silent; fi
npm run --silent build >/dev/null

WORK=$(mktemp -d /var/tmp/virtnbd-demo.XXXXXX)
chmod 0755 "$WORK"
DOM="virtnbd-demo-$$"
MAPPID=""
cleanup() {
  [ -n "$MAPPID" ] && kill "$MAPPID" 2>/dev/null && wait "$MAPPID" 2>/dev/null || true
  virsh -q destroy "$DOM" >/dev/null 2>&1 || true
  virsh -q destroy "$DOM-live" >/dev/null 2>&1 || true
  virsh -q undefine "$DOM" --checkpoints-metadata >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

step "Throwaway domain $DOM (TCG, 64 MiB RAM, 128 MiB qcow2 disk with an ext4 file system)"
MARKER="virtnbd demo marker $(date +%s)"
truncate -s 64M "$WORK/fs.raw"
mkfs.ext4 -q -F "$WORK/fs.raw"
printf '%s\n' "$MARKER" > "$WORK/marker.txt"
debugfs -w -R "write $WORK/marker.txt marker.txt" "$WORK/fs.raw" >/dev/null 2>&1
truncate -s 128M "$WORK/fs.raw"
qemu-img convert -q -f raw -O qcow2 "$WORK/fs.raw" "$WORK/disk.qcow2"
rm "$WORK/fs.raw"
qemu-io -f qcow2 -c "write -P 0x42 80M 8M" "$WORK/disk.qcow2" >/dev/null
chmod 0644 "$WORK/disk.qcow2"
cat > "$WORK/domain.xml" <<XML
<domain type='qemu'>
  <name>$DOM</name>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$WORK/disk.qcow2'/>
      <target dev='sda' bus='sata'/>
    </disk>
  </devices>
</domain>
XML
virsh -q define "$WORK/domain.xml" >/dev/null
virsh -q start "$DOM" >/dev/null

BK="$WORK/backup"
step "Full backup"
time node bin/virtnbdbackup.js -d "$DOM" -l full -o "$BK" --nocolor -n 2>&1 | grep -E "Total saved|Finished successfully|ERROR"

step "Change the running disk (qemu-io through the monitor), then an incremental backup with lz4"
virsh -q qemu-monitor-command "$DOM" --hmp 'qemu-io -d sata0-0-0 "write -P 0x5a 96M 4M"' >/dev/null
time node bin/virtnbdbackup.js -d "$DOM" -l inc -z -o "$BK" --nocolor -n 2>&1 | grep -E "Total saved|Finished successfully|ERROR"

step "Backup set"
ls -l "$BK"

step "Verify (checksums and stream structure)"
node bin/virtnbdrestore.js -i "$BK" -o verify --nocolor 2>&1 | grep -E "Checksum result|OK|ERROR"

step "Restore and compare with the domain's disk"
virsh -q destroy "$DOM" >/dev/null
node bin/virtnbdrestore.js -i "$BK" -o "$WORK/restore" --nocolor -n >/dev/null 2>"$WORK/restore.log" || { cat "$WORK/restore.log"; exit 1; }
qemu-img compare -q "$WORK/disk.qcow2" "$WORK/restore/disk.qcow2" && echo "restored image is identical to the domain's disk"

step "Live restore: a copy of the domain runs at once from the backup, its disk moves into place while it runs"
node bin/virtnbdrestore.js -i "$BK" -o "$WORK/live" --live -N "$DOM-live" --nocolor -n 2>&1 | grep -E "Started domain|is complete|Live restore complete|ERROR"
virsh -q domstate "$DOM-live" | grep -q running && echo "the copy $DOM-live runs on its own image now"
virsh -q destroy "$DOM-live" >/dev/null
qemu-img compare -q "$WORK/disk.qcow2" "$WORK/live/disk.qcow2" && echo "live-restored image is identical to the domain's disk"

step "Retention: a newer chain (an offline copy) beside a copy of the first, then virtnbdprune --keep-last 1"
mkdir -p "$WORK/chains"
cp -a "$BK" "$WORK/chains/2026-11"
node bin/virtnbdbackup.js -d "$DOM" -l copy -o "$WORK/chains/2026-12" --nocolor -n 2>&1 | grep -E "Finished successfully|ERROR"
node bin/virtnbdprune.js --keep-last 1 --dry-run -L "$WORK/prune.log" --nocolor "$WORK/chains" 2>&1 | grep -E "Keep|Would remove|ERROR"
node bin/virtnbdprune.js --keep-last 1 -L "$WORK/prune.log" --nocolor "$WORK/chains" 2>&1 | grep -E "Removed|ERROR"
[ "$(ls "$WORK/chains")" = "2026-12" ] && echo "only the newest chain is left: $(ls "$WORK/chains")" || { ls -l "$WORK/chains"; exit 1; }

if [ -x bin/virtnbdmap.js ]; then
  step "Instant recovery: map the chain (full + inc) and read the marker file from it"
  PORT=$((20000 + RANDOM % 20000))
  node bin/virtnbdmap.js --listen-only -p "$PORT" -e sda --nocolor -L "$WORK/map.log" \
    -f "$BK/sda.full.data,$BK/sda.inc.virtnbdbackup.1.data" >"$WORK/map.out" 2>&1 &
  MAPPID=$!
  for _ in $(seq 1 200); do grep -q "Press CTRL+C to disconnect" "$WORK/map.out" && break; sleep 0.1; done
  qemu-img convert -q -f raw -O raw "nbd://127.0.0.1:$PORT/sda" "$WORK/mapped.raw"
  GOT=$(debugfs -R "cat marker.txt" "$WORK/mapped.raw" 2>/dev/null)
  kill "$MAPPID"; wait "$MAPPID" 2>/dev/null || true; MAPPID=""
  [ "$GOT" = "$MARKER" ] && echo "marker read from the mapped backup: $GOT" || { echo "marker mismatch: [$GOT]"; exit 1; }
fi

step "Summary"
echo "full + incremental backup, verify, restore (bit-exact), live restore (bit-exact), retention, instant recovery (marker read) of $DOM: OK"
