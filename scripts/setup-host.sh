#!/usr/bin/env bash
# Prepares a Debian/Ubuntu host (as root): system packages, then virtlogd and libvirtd.
# Idempotent: installs only what is missing and starts daemons only when not running.
set -euo pipefail

PACKAGES=(
  build-essential pkg-config python3 liblz4-dev libxxhash-dev libdeflate-dev zlib1g-dev libvirt-dev
  qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients
  nbdkit nbdkit-plugin-python libnbd-bin
  python3-lz4 python3-libnbd python3-libvirt python3-colorlog virtnbdbackup
  openssh-server openssh-client ovmf swtpm swtpm-tools e2fsprogs util-linux bsdutils iproute2 openssl man-db groff-base
  # The Linux test guest (test/helpers/linux-guest.ts): Debian's kernel, a static busybox, xz to unpack the kernel.
  linux-image-amd64 busybox-static xz-utils
  # The local Ceph RGW for the S3 target tests and benchmarks (scripts/ceph-rgw.sh).
  ceph-mon ceph-osd radosgw s3cmd
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup-host: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# libvirt re-probes qemu on every call when /dev/kvm is not Debian's root:kvm 0660 (48 s per
# define instead of 20 ms), even for TCG domains.
if [ -e /dev/kvm ]; then
  getent group kvm >/dev/null && chgrp kvm /dev/kvm
  chmod 0660 /dev/kvm
fi

# Daemons: started directly (CI machines and containers may have no systemd).
# A daemon that is still shutting down (just killed) is waited for, then a new one started.
for _ in $(seq 1 150); do
  [ -S /run/libvirt/virtlogd-sock ] && pgrep -x virtlogd >/dev/null && break
  pgrep -x virtlogd >/dev/null || virtlogd -d
  sleep 0.2
done
for _ in $(seq 1 150); do
  virsh -c qemu:///system version >/dev/null 2>&1 && exit 0
  pgrep -x libvirtd >/dev/null || libvirtd -d
  sleep 0.2
done
echo "setup-host: libvirtd did not answer on qemu:///system" >&2
exit 1
