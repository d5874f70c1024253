#!/bin/sh
# Makes a throwaway x509 CA with a server and a client certificate in qemu's directory layout
# (tls-creds-x509,dir=…), for NBD over TLS in tests and trials:
#
#   ca-cert.pem ca-key.pem server-cert.pem server-key.pem client-cert.pem client-key.pem
#
# usage: scripts/make-test-certs.sh [-d DAYS] DIR [NAME...]
#
# NAMEs (default: localhost 127.0.0.1) go into the subjectAltName of both certificates (IPv4/IPv6
# addresses as IP:, everything else as DNS:); the first one is the server's CN. Clients check the
# server certificate against the host name or address they connect to, so list every name the
# NBD server is reached by (--nbd-ip, the host name libvirt reports, …).
#
# virtnbdbackup/virtnbdrestore with --tls --tls-cert DIR read ca-cert.pem, client-cert.pem and
# client-key.pem on the backup host; qemu-nbd started by them on the hypervisor reads
# ca-cert.pem, server-cert.pem and server-key.pem from the same path there; libvirt's backup jobs
# read the server files from qemu.conf's backup_tls_x509_cert_dir (default /etc/pki/qemu).
# Keys are written mode 0600; whoever serves them (qemu as libvirt-qemu) must be able to read them.
set -eu

days=7
if [ "${1:-}" = "-d" ]; then
  days=$2
  shift 2
fi
if [ $# -lt 1 ]; then
  echo "usage: $0 [-d DAYS] DIR [NAME...]" >&2
  exit 2
fi
dir=$1
shift
[ $# -gt 0 ] || set -- localhost 127.0.0.1

san=""
for name in "$@"; do
  case $name in
    *:*|[0-9]*.[0-9]*.[0-9]*.[0-9]*) entry="IP:$name" ;;
    *) entry="DNS:$name" ;;
  esac
  san="${san:+$san,}$entry"
done

mkdir -p "$dir"
umask 077
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/ca-key.pem" -out "$dir/ca-cert.pem" \
  -days "$days" -subj "/CN=virtnbdbackup test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

for who in server client; do
  if [ $who = server ]; then usage=serverAuth; cn=$1; else usage=clientAuth; cn=virtnbdbackup-client; fi
  openssl req -newkey rsa:2048 -nodes -keyout "$dir/$who-key.pem" -out "$tmp/$who.csr" -subj "/CN=$cn" 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\nsubjectAltName=%s\n' \
    "$usage" "$san" > "$tmp/$who.ext"
  openssl x509 -req -in "$tmp/$who.csr" -CA "$dir/ca-cert.pem" -CAkey "$dir/ca-key.pem" -CAcreateserial \
    -CAserial "$tmp/ca.srl" -out "$dir/$who-cert.pem" -days "$days" -extfile "$tmp/$who.ext" 2>/dev/null
done
chmod 0644 "$dir/ca-cert.pem" "$dir/server-cert.pem" "$dir/client-cert.pem"
