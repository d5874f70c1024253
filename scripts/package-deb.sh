#!/usr/bin/env bash
# Builds the Debian package virtnbdbackup-ts_<version>_<arch>.deb (`npm run package:deb`).
#
#   scripts/package-deb.sh [-o OUTDIR] [TARBALL]
#
# The app is the npm package: TARBALL (made by `npm pack`) or, without one, a new `npm pack`
# (its prepack builds the addon, dist/ and the man pages, and stages the prebuilt addon).
# Staging tree:
#   /usr/lib/virtnbdbackup-ts/          the package's files, the prebuilt addon only (no sources,
#                                        no compiler needed), node_modules from `npm ci
#                                        --omit=dev --omit=optional` (no node-gyp)
#   /usr/bin/<command>                  symlinks to ../lib/virtnbdbackup-ts/bin/<command>.js
#   /usr/share/man/man1/<command>.1.gz, bash and zsh completions, /usr/share/doc/virtnbdbackup-ts/
#   /lib/systemd/system/virtnbdbackup@.service, virtnbdbackup@.timer (templates: nothing enabled),
#   /usr/share/doc/virtnbdbackup-ts/examples/virtnbdbackup.conf.example
# The commands and man pages have the names of Debian's own `virtnbdbackup` package (the Python
# tool), so the package conflicts with it and replaces it.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=$root
while getopts o: opt; do
  case $opt in
    o) out=$(mkdir -p "$OPTARG" && cd "$OPTARG" && pwd) ;;
    *) echo "usage: $0 [-o OUTDIR] [TARBALL]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))

name=virtnbdbackup-ts
version=$(node -p "require('$root/package.json').version")
arch=$(dpkg --print-architecture)
commands=(virtnbdbackup virtnbdrestore virtnbdmap virtnbdprune)

work=$(mktemp -d "${TMPDIR:-/tmp}/$name-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [ $# -ge 1 ]; then
  tarball=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
else
  (cd "$root" && npm pack --silent --pack-destination "$work" >/dev/null)
  tarball=$(ls "$work"/"$name"-*.tgz)
fi

stage=$work/stage
app=$stage/usr/lib/$name
mkdir -p "$app"
tar -xzf "$tarball" -C "$app" --strip-components=1 --no-same-owner
prebuilt=$app/src/native/prebuilds/linux-$(node -p process.arch)/virtnbd.node
[ -f "$prebuilt" ] || { echo "package-deb: $tarball has no prebuilt addon for this machine" >&2; exit 1; }
# Only the prebuilt addon: no sources, no install-time build.
rm -rf "$app"/src/native/*.cc "$app"/src/native/*.h "$app"/src/native/binding.gyp "$app"/src/native/libvirt "$app"/scripts
# Production dependencies, locked by the project's package-lock.json; node-gyp and
# node-addon-api are optional dependencies (only for building the addon) and stay out.
cp "$root/package-lock.json" "$app/"
(cd "$app" && npm ci --omit=dev --omit=optional --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=error >/dev/null)
rm -f "$app/package-lock.json" "$app/README.md"   # README: in /usr/share/doc
# Man pages and completions go to their system places below; dist/ keeps the bundles only.
rm -rf "$app/dist/man" "$app/dist/completion"
# The systemd units and their example go to their system places too.
rm -rf "$app/systemd"

mkdir -p "$stage/usr/bin" "$stage/usr/share/man/man1" "$stage/usr/share/doc/$name" \
  "$stage/usr/share/bash-completion/completions" "$stage/usr/share/zsh/vendor-completions"
for c in "${commands[@]}"; do
  ln -s "../lib/$name/bin/$c.js" "$stage/usr/bin/$c"
done
# From the tarball's dist/ (the man pages and completions `npm run build` makes), when present.
extracted=$work/extracted
mkdir -p "$extracted"
tar -xzf "$tarball" -C "$extracted" --strip-components=1 --no-same-owner
for c in "${commands[@]}"; do
  if [ -f "$extracted/dist/man/man1/$c.1" ]; then
    gzip -9n <"$extracted/dist/man/man1/$c.1" >"$stage/usr/share/man/man1/$c.1.gz"
  fi
  if [ -f "$extracted/dist/completion/bash/$c" ]; then
    install -m 0644 "$extracted/dist/completion/bash/$c" "$stage/usr/share/bash-completion/completions/$c"
  fi
  if [ -f "$extracted/dist/completion/zsh/_$c" ]; then
    install -m 0644 "$extracted/dist/completion/zsh/_$c" "$stage/usr/share/zsh/vendor-completions/_$c"
  fi
done
rmdir --ignore-fail-on-non-empty "$stage/usr/share/man/man1" "$stage/usr/share/man" \
  "$stage/usr/share/bash-completion/completions" "$stage/usr/share/bash-completion" \
  "$stage/usr/share/zsh/vendor-completions" "$stage/usr/share/zsh"

install -m 0644 "$extracted/README.md" "$stage/usr/share/doc/$name/README.md"
# systemd template units (Debian 12 keeps packaged units in /lib/systemd/system).
install -d "$stage/lib/systemd/system" "$stage/usr/share/doc/$name/examples"
install -m 0644 "$extracted/systemd/virtnbdbackup@.service" "$extracted/systemd/virtnbdbackup@.timer" "$stage/lib/systemd/system/"
install -m 0644 "$extracted/systemd/virtnbdbackup.conf.example" "$stage/usr/share/doc/$name/examples/"
cat >"$stage/usr/share/doc/$name/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: $name
Comment: A TypeScript re-implementation of virtnbdbackup (backup tools for libvirt/qemu
 domains). node_modules/ holds the npm packages it runs with, each under its own license
 (see their package.json and license files there).

Files: *
License: GPL-3.0-or-later

License: GPL-3.0-or-later
 This program is free software: you can redistribute it and/or modify it under the terms of
 the GNU General Public License as published by the Free Software Foundation, either version 3
 of the License, or (at your option) any later version.
 .
 On Debian systems, the complete text of the GNU General Public License version 3 can be
 found in /usr/share/common-licenses/GPL-3.
COPYRIGHT

# Modes dpkg expects whatever the umask and the tarball said.
find "$stage" -type d -exec chmod 0755 {} +
find "$stage" -type f -exec chmod go-w {} +
chmod 0755 "$app"/bin/*.js

mkdir -p "$stage/DEBIAN"
installed_size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<CONTROL
Package: $name
Version: $version
Architecture: $arch
Maintainer: virtnbdbackup-ts developers <root@localhost>
Installed-Size: $installed_size
Depends: nodejs (>= 20.17), libc6, libstdc++6, libvirt0, liblz4-1, libdeflate0, zlib1g, qemu-utils
Recommends: libvirt-daemon-system
Conflicts: virtnbdbackup
Replaces: virtnbdbackup
Section: admin
Priority: optional
Description: backup, restore and instant recovery for libvirt/qemu/KVM domains
 A TypeScript re-implementation of virtnbdbackup, drop-in compatible with it:
 virtnbdbackup takes full, incremental and differential backups of running or
 shut-off domains through libvirt's backup API and NBD, virtnbdrestore restores,
 dumps or verifies backup sets, and virtnbdmap serves a backup chain over NBD
 or maps it to a /dev/nbdX device for instant recovery.
 .
 It installs the same command names as Debian's virtnbdbackup package (the
 original Python tool) and so conflicts with it.
CONTROL

deb=$out/${name}_${version}_${arch}.deb
dpkg-deb --build --root-owner-group -Zxz "$stage" "$deb" >/dev/null
echo "$deb"
