#!/usr/bin/env bash
# A throw-away single-node Ceph cluster with an RGW (S3) endpoint for the object-storage tests
# and benchmarks, built from Debian's Ceph 16 packages (as root; no systemd needed).
#
#   scripts/ceph-rgw.sh start    install what is missing, then bring the cluster up (idempotent:
#                                does nothing when the RGW already answers for the CI user)
#   scripts/ceph-rgw.sh stop     stop the daemons this script started, remove the state dir
#   scripts/ceph-rgw.sh status   exit 0 when the RGW answers for the CI user
#   scripts/ceph-rgw.sh env      print `export ...` lines: credentials, region, endpoint
#   scripts/ceph-rgw.sh admin …  radosgw-admin against this cluster (e.g. quota set)
#
# The cluster: one monitor on 127.0.0.1, one memstore OSD (objects live in the OSD's memory:
# nothing survives a restart, and nothing is written to disk), one radosgw with the beast
# frontend on 127.0.0.1:$CEPH_RGW_PORT, no manager, authentication off. A cold start takes
# about 2.5 s. Everything (config, monitor store, logs, pid files, admin sockets) lives in
# $CEPH_RGW_DIR (default /var/tmp/virtnbdbackup-ceph), which `start` recreates and `stop`
# removes. The S3 user has fixed credentials (see `env`).
#
# Environment: CEPH_RGW_DIR (state dir), CEPH_RGW_PORT (default 7480), CEPH_RGW_OSD_BYTES (the
# OSD's capacity, default 8 GiB), CEPH_MON_PORT (msgr v2 port of the monitor, default 3300; v1 is
# CEPH_MON_PORT_V1, default 6789). A second cluster needs its own dir and ports.
set -euo pipefail

DIR="${CEPH_RGW_DIR:-/var/tmp/virtnbdbackup-ceph}"
PORT="${CEPH_RGW_PORT:-7480}"
MON_PORT="${CEPH_MON_PORT:-3300}"
MON_PORT_V1="${CEPH_MON_PORT_V1:-6789}"
OSD_BYTES="${CEPH_RGW_OSD_BYTES:-8589934592}"
ENDPOINT="http://127.0.0.1:${PORT}"
CONF="$DIR/ceph.conf"

CI_UID="virtnbdbackup-ci"
CI_ACCESS_KEY="VNBDCIACCESSKEY00001"
CI_SECRET_KEY="virtnbdbackup-ci-secret-key-000000000001"
REGION="us-east-1"

PACKAGES=(ceph-mon ceph-osd radosgw s3cmd)
DAEMONS=(radosgw ceph-osd ceph-mon) # in stop order

# Debian's tools, never a pyenv/venv python3 (the ceph CLI and s3cmd are Python scripts).
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

log() { echo "ceph-rgw: $*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

install_packages() {
  local missing=() p t0
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  t0=$(now)
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  log "installed in $(elapsed "$t0") s"
}

# One S3 request signed with the CI user's keys: the endpoint answers and the user works.
s3_ok() {
  command -v s3cmd >/dev/null || return 1
  timeout 10 s3cmd --config=/dev/null --no-ssl --access_key="$CI_ACCESS_KEY" --secret_key="$CI_SECRET_KEY" \
    --host="127.0.0.1:$PORT" --host-bucket="127.0.0.1:$PORT" --region="$REGION" ls >/dev/null 2>&1
}

# The endpoint answers at all (anonymous ListBuckets).
http_ok() {
  curl -s -o /dev/null --max-time 2 "$ENDPOINT/"
}

ceph_cli() { timeout 30 ceph -c "$CONF" --connect-timeout 10 "$@"; }

# A process exists and has not exited. (An exited daemon stays a zombie until PID 1 reaps it,
# which some container inits do only every second or two.)
alive() { # pid
  local st
  st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  st=${st##*) }
  [ "${st:0:1}" != Z ]
}

# The pid in a daemon's pid file, when that process is still alive.
daemon_pid() {
  local f="$DIR/run/$1.pid" pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f" 2>/dev/null) || return 1
  [ -n "$pid" ] && alive "$pid" && echo "$pid"
}

# Daemons of this cluster (started with our config), found by name and command line: the
# fallback when pid files are gone. Ceph daemons of anything else on this machine are left alone.
our_daemons() {
  local name pid
  for name in "${DAEMONS[@]}"; do
    for pid in $(pgrep -x "$name" || true); do
      alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-c $CONF " && echo "$pid"
    done
  done
}

# Stops one daemon: SIGTERM, then SIGKILL when it has not exited within 5 s. Each exits within
# 0.3 s here (the memstore OSD does not save its objects), but radosgw hangs when its writes
# block on a full OSD.
stop_daemon() { # pid
  local i
  kill -TERM "$1" 2>/dev/null || return 0
  for i in $(seq 1 50); do
    alive "$1" || return 0
    sleep 0.1
  done
  log "pid $1 did not exit within 5 s of SIGTERM, killing it"
  kill -KILL "$1" 2>/dev/null || true
  for i in $(seq 1 50); do
    alive "$1" || return 0
    sleep 0.1
  done
  return 1
}

# radosgw first: with the OSD gone it would hang in RADOS calls for minutes.
stop_cluster() {
  local pid name
  for name in client.rgw.a osd.0 mon.a; do
    if pid=$(daemon_pid "$name"); then stop_daemon "$pid"; fi
  done
  # Daemons of this cluster whose pid file is gone (a half-finished start or stop).
  for pid in $(our_daemons); do stop_daemon "$pid"; done
  if [ -n "$(our_daemons)" ]; then
    log "could not stop $(our_daemons | tr '\n' ' ')"
    return 1
  fi
  rm -rf "$DIR"
}

write_conf() {
  local fsid="$1"
  cat >"$CONF" <<EOF
# Written by scripts/ceph-rgw.sh: a throw-away single-node test cluster.
[global]
fsid = $fsid
mon_initial_members = a
mon_host = [v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_PORT_V1]
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
# No cephx: nothing but this machine talks to the cluster.
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
# One OSD: pools of size 1, few placement groups, no warnings about either.
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_warn_on_pool_no_redundancy = false
mon_warn_on_insecure_global_id_reclaim_allowed = false
# The monitor store is tiny: no warning when the disk is less than 30 % free, and no monitor
# shutdown below 5 % (a test filling the disk must not take the cluster down).
mon_data_avail_warn = 1
mon_data_avail_crit = 0
# Everything under the state dir.
run_dir = $DIR/run
pid_file = $DIR/run/\$name.pid
admin_socket = $DIR/run/\$name.asok
log_file = $DIR/log/\$name.log
mon_cluster_log_file = $DIR/log/cluster.log
crash_dir = $DIR/crash
log_to_stderr = false
err_to_stderr = true
debug_ms = 0

[mon]
mon_data = $DIR/mon/\$cluster-\$id
# Map changes (OSD boot, each of the pools RGW creates) commit after 0.1 s instead of 1 s:
# a cold start takes 2.5 s instead of 13 s.
paxos_propose_interval = 0.1
paxos_min_wait = 0.01

[osd]
osd_data = $DIR/osd/\$cluster-\$id
osd_objectstore = memstore
# The OSD's capacity: memory is used only as far as objects are stored. When it is full,
# writes block (no error): tests that need a full target use bucket quotas.
memstore_device_bytes = $OSD_BYTES
# Bluestore's cache target (memstore has no cache; set low in case the store is switched).
osd_memory_target = 536870912
# Fewer worker threads than the default 5 shards x 2 threads (2 cores).
osd_op_num_shards = 2
osd_op_num_threads_per_shard = 1

[client]
# Path-style requests (http://127.0.0.1:PORT/bucket/key): no rgw_dns_name.
rgw_frontends = beast endpoint=127.0.0.1:$PORT
rgw_data = $DIR/rgw
# radosgw defaults to a cephx-secured monitor connection, impossible without cephx.
ms_mon_client_mode = crc
# Threads serving requests (default 512).
rgw_thread_pool_size = 64
# Quotas: the defaults. With one radosgw its quota cache follows its own writes, and a quota
# set with radosgw-admin applies from the next request on. (The sync intervals at 0 made its
# quota threads spin: a core's worth of CPU, all the time, on this 2-core machine.)
# The data of deleted objects and aborted uploads is freed after 30-60 s, not after 2-3 h:
# the OSD keeps it in memory until then.
rgw_gc_obj_min_wait = 30
rgw_gc_processor_period = 30
# No lifecycle workers (expiration rules run once a day at best): they sleep in 5 s steps,
# which radosgw's shutdown waits for.
rgw_enable_lc_threads = false
EOF
}

wait_for() { # seconds description command...
  local secs="$1" what="$2" i
  shift 2
  for i in $(seq 1 $((secs * 5))); do
    "$@" && return 0
    sleep 0.2
  done
  log "timed out after ${secs} s waiting for $what (logs in $DIR/log)"
  return 1
}

# Starts a daemon; it forks once it has reached the monitor (a bounded wait for that). Its
# stderr goes to log/NAME.stderr, shown when the start fails.
start_daemon() { # name command...
  local name="$1"
  shift
  if ! timeout 60 "$@" 2>>"$DIR/log/$name.stderr"; then
    log "$name did not start:"
    tail -n 20 "$DIR/log/$name.stderr" "$DIR/log/$name.log" >&2 2>/dev/null || true
    return 1
  fi
}

mon_up() { ceph_cli mon stat >/dev/null 2>&1; }
osd_up() { ceph_cli osd stat -f json 2>/dev/null | grep -q '"num_up_osds":1'; }

start_cluster() {
  local t0 fsid uuid id
  t0=$(now)
  stop_cluster
  mkdir -p "$DIR"/{run,log,crash,mon,osd,rgw}
  fsid=$(cat /proc/sys/kernel/random/uuid)
  write_conf "$fsid"

  # Monitor.
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_PORT_V1]" "$DIR/monmap" >/dev/null
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" >"$DIR/log/mkfs-mon.out" 2>&1 ||
    { log "ceph-mon --mkfs failed:"; cat "$DIR/log/mkfs-mon.out" >&2; return 1; }
  start_daemon mon.a ceph-mon -c "$CONF" -i a
  wait_for 30 "the monitor" mon_up
  log "monitor up after $(elapsed "$t0") s"

  # OSD.
  uuid=$(cat /proc/sys/kernel/random/uuid)
  id=$(ceph_cli osd new "$uuid")
  mkdir -p "$DIR/osd/ceph-$id"
  ceph-osd -c "$CONF" -i "$id" --mkfs --osd-uuid "$uuid" >"$DIR/log/mkfs-osd.out" 2>&1 ||
    { log "ceph-osd --mkfs failed:"; cat "$DIR/log/mkfs-osd.out" >&2; return 1; }
  start_daemon "osd.$id" ceph-osd -c "$CONF" -i "$id"
  wait_for 30 "the OSD" osd_up
  # No manager runs (nothing here needs one); its absence is no health warning.
  ceph_cli health mute MGR_DOWN --sticky >/dev/null 2>&1 || log "could not mute the MGR_DOWN warning"
  log "OSD up after $(elapsed "$t0") s"

  # RGW (creates its pools on first start).
  start_daemon client.rgw.a radosgw -c "$CONF" -n client.rgw.a
  wait_for 60 "the RGW endpoint $ENDPOINT" http_ok
  log "RGW answers after $(elapsed "$t0") s"

  radosgw-admin -c "$CONF" user create --uid="$CI_UID" --display-name="virtnbdbackup CI" \
    --access-key="$CI_ACCESS_KEY" --secret-key="$CI_SECRET_KEY" >/dev/null
  wait_for 30 "the CI user" s3_ok
  log "cluster ready in $(elapsed "$t0") s: $ENDPOINT (state in $DIR)"
}

cmd="${1:-}"
case "$cmd" in
  start)
    if s3_ok; then
      log "RGW already answers on $ENDPOINT"
      exit 0
    fi
    install_packages
    start_cluster
    ;;
  stop)
    t0=$(now)
    stop_cluster
    log "stopped in $(elapsed "$t0") s"
    ;;
  status)
    s3_ok || exit 1
    ;;
  env)
    echo "export AWS_ACCESS_KEY_ID=$CI_ACCESS_KEY"
    echo "export AWS_SECRET_ACCESS_KEY=$CI_SECRET_KEY"
    echo "export AWS_REGION=$REGION"
    echo "export S3_ENDPOINT=$ENDPOINT"
    echo "export CEPH_CONF=$CONF"
    ;;
  admin)
    shift
    exec radosgw-admin -c "$CONF" "$@"
    ;;
  *)
    echo "usage: $0 start|stop|status|env|admin RADOSGW-ADMIN-ARGS..." >&2
    exit 2
    ;;
esac
