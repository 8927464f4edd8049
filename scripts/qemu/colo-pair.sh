#!/usr/bin/env bash
# A COLO pair of real QEMU VMs on one machine, inside a network namespace, with our colo-compare daemon in place of
# QEMU's -object colo-compare (or, with --builtin, QEMU's own for comparison).
#
#   scripts/qemu/colo-pair.sh start  [--name NAME] [--builtin] [--checkpoint-delay MS] [-- DAEMON-OPTIONS...]
#   scripts/qemu/colo-pair.sh status [--name NAME]
#   scripts/qemu/colo-pair.sh stop   [--name NAME]
#   scripts/qemu/colo-pair.sh daemon-stop|daemon-start [--name NAME]   stop or (re)start only the daemon
#   COLO_VM=primary|secondary|daemon|binary scripts/qemu/colo-pair.sh qemu-args [--name NAME] [--builtin]
#                                   print that process's arguments, one per line (for launchers such as containers)
#   scripts/qemu/colo-pair.sh takeover [--name NAME]   the network half of a failover to the secondary: the primary's
#                                                      tap leaves the bridge (flushing what the bridge learned on it)
#                                                      and the secondary's joins it
#
# Environment: QEMU_VERSION=7.2|10.0|11.1|PATH (default 7.2, see qemu.sh),
# ACCEL=tcg|kvm (default tcg: KVM on our machines boots no Linux guest), COLO_PAIR_DIR (state folder,
# default /tmp/colo-pair-NAME), COLO_COMPARE_DLL (the daemon, default the Release build in this repository),
# COLO_GUEST_DIR (see build-guest.sh), COLO_SUMMARY_INTERVAL (seconds between the daemon's summary lines, default 5).
#
# Topology (QEMU's docs/COLO-FT.txt, diskless; every chardev is a Unix socket in the state folder, so the daemon
# runs outside the namespace and no traffic leaves it):
#
#   namespace colo-NAME:  br0 10.0.0.1/24 (the client) ── tap-pri ── primary guest 10.0.0.2
#                         tap-sec (off the bridge until failover) ── secondary guest 10.0.0.2
#   primary:   mirror0 (server, mirror.sock)     ← secondary red0        client→VM packets to the secondary
#              compare0 (server, primary-in.sock)  → daemon primary_in    redire1: what the primary guest sends
#              compare_out (server, outdev.sock)   ← daemon outdev        redire0: released frames to the tap
#   daemon:    secondary_in (server, secondary-in.sock) ← secondary red1 (reconnecting): what the secondary sends
#   monitors:  primary-qmp.sock / secondary-qmp.sock for tests and operators,
#              primary-qmp-daemon.sock / secondary-qmp-daemon.sock for the daemon
#   migration: secondary -incoming unix:migrate.sock
#
# Everything started is recorded in PID files and stopped by PID; the namespace (with its bridge and taps) is
# deleted on stop. pair.env in the state folder describes the running pair for tests (shell syntax).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

name=colo
builtin=0
checkpoint_delay=20000
daemon_extra=()
command="${1:-}"
[ $# -gt 0 ] && shift
while [ $# -gt 0 ]; do
  case "$1" in
    --name) name="$2"; shift 2 ;;
    --builtin) builtin=1; shift ;;
    --checkpoint-delay) checkpoint_delay="$2"; shift 2 ;;
    --) shift; daemon_extra=("$@"); break ;;
    *) echo "colo-pair: unknown option '$1'" >&2; exit 2 ;;
  esac
done
case "$name" in *[!a-zA-Z0-9_-]*|'') echo "colo-pair: --name takes letters, digits, - and _" >&2; exit 2 ;; esac

accel="${ACCEL:-tcg}"
dir="${COLO_PAIR_DIR:-/tmp/colo-pair-$name}"
ns="colo-$name"
guest_ip=10.0.0.2
client_ip=10.0.0.1
mac=52:54:00:c0:10:01
dll="${COLO_COMPARE_DLL:-$repo/src/ColoCompareDaemon/bin/Release/net10.0/colo-compare.dll}"

log() { echo "colo-pair[$name]: $*" >&2; }
die() { log "$*"; exit 1; }

qmp() { # qmp SOCKET COMMAND [JSON]: one QMP command through our own client; prints the reply line
  dotnet "$dll" qmp "unix:$1" "${@:2}"
}

alive() { # alive PIDFILE: the recorded process still runs and is the one we started (its command line names $dir)
  local pid
  [ -f "$1" ] || return 1
  pid="$(cat "$1")"
  [ -d "/proc/$pid" ] && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$dir"
}

stop_pid() { # stop_pid PIDFILE [SIGNAL]: TERM (or SIGNAL), wait up to 10 s, then KILL; only our own process
  local file="$1" pid i
  if alive "$file"; then
    pid="$(cat "$file")"
    kill "-${2:-TERM}" "$pid" 2>/dev/null || true
    for i in $(seq 100); do alive "$file" || break; sleep 0.1; done
    if alive "$file"; then log "PID $pid did not stop; killing it"; kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
  fi
  rm -f "$file"
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...: poll every 0.2 s
  local seconds="$1" what="$2" deadline
  shift 2
  deadline=$(( $(date +%s) + seconds ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || die "timed out after ${seconds}s waiting for $what"
    sleep 0.2
  done
}

chardev_connected() { # chardev_connected SOCKET LABEL...: query-chardev shows every LABEL connected
  local reply label
  reply="$(qmp "$1" query-chardev)" || return 1
  shift
  for label in "$@"; do
    echo "$reply" | tr '{' '\n' | grep -F "\"label\":\"$label\"" | grep -q '"filename":"disconnected' && return 1
    echo "$reply" | grep -qF "\"label\":\"$label\"" || return 1
  done
  return 0
}

has_namespace() { ip netns list | awk '{ print $1 }' | grep -qxF "$ns"; }

colo_mode_is() { qmp "$1" query-colo-status | grep -q "\"mode\":\"$2\""; }
guest_ready() { grep -q "COLO-GUEST-READY" "$1" 2>/dev/null; }

# The QEMU to run: QEMU_VERSION=7.2|10.0|11.1|PATH (qemu.sh, which also holds workaround 1 for COLO under TCG).
# COLO_TCG_WORKAROUND=off runs the unpatched binary under TCG too (to check whether a QEMU still needs it).
qemu_binary() {
  if [ "$accel" = tcg ] && [ "${COLO_TCG_WORKAROUND:-on}" != off ]; then "$here/qemu.sh" colo-tcg; else "$here/qemu.sh" binary; fi
}

version_at_least() { [ "$(printf '%s\n%s\n' "$1" "$qemu_version" | sort -V | head -n 1)" = "$1" ]; }

qemu_setup() { # what differs between QEMU versions on the command lines
  qemu_version="$("$here/qemu.sh" version)" || die "no QEMU for QEMU_VERSION=${QEMU_VERSION:-7.2}"
  # -chardev socket's reconnect delay: reconnect=SECONDS up to 10.1 (deprecated from 9.2, removed in 10.2),
  # reconnect-ms=MS from 9.2 (7.2 rejects it).
  if version_at_least 9.2; then reconnect=reconnect-ms=1000; else reconnect=reconnect=1; fi
  # Workaround 2 (TCG only): QEMU 7.2 corrupts the secondary after every checkpoint under TCG, because the fast
  # path of the dirty-bitmap sync misses TCG's writes (fixed upstream in QEMU 9.0 by commit 03bfc2188f, not in
  # Debian's 7.2). Guest RAM that is not a multiple of 256 KiB avoids that path: 131064K = 128 MiB - 8 KiB.
  if [ "$accel" = tcg ] && ! version_at_least 9.0; then mem="${COLO_GUEST_MEM:-131064K}"; else mem="${COLO_GUEST_MEM:-128M}"; fi
}

guest_args() { # guest_args VM-NAME: what both QEMUs share, plus the VM's name for the guest's /cgi-bin/vm (padded
  # to one length: the secondary's guest reads it with the size the primary's guest saw at boot)
  local accel_args=(-accel "$accel")
  [ "$accel" = kvm ] && accel_args+=(-cpu host)
  printf '%s\n' "${accel_args[@]}" -M pc -smp 1 -m "$mem" -nodefaults -display none -no-reboot \
    -kernel "$guest/vmlinuz" -initrd "$guest/initramfs.img" \
    -append "console=ttyS0 quiet panic=-1 colo_ip=$guest_ip/24" \
    -fw_cfg "name=opt/colochardev/vm,string=$(printf '%-12s' "$1")" \
    -device "virtio-net-pci,id=e0,netdev=hn0,mac=$mac"
}

primary_args() { # the primary's QEMU arguments, one per line (the binary not included)
  guest_args primary
  printf '%s\n' -name primary -serial "file:$dir/primary.serial" \
    -qmp "unix:$dir/primary-qmp.sock,server=on,wait=off" \
    -qmp "unix:$dir/primary-qmp-daemon.sock,server=on,wait=off" \
    -netdev tap,id=hn0,ifname=tap-pri,script=no,downscript=no,vhost=off,vnet_hdr=off \
    -chardev "socket,id=mirror0,path=$dir/mirror.sock,server=on,wait=off" \
    -chardev "socket,id=compare0,path=$dir/primary-in.sock,server=on,wait=off" \
    -chardev "socket,id=compare_out,path=$dir/outdev.sock,server=on,wait=off" \
    -object filter-mirror,id=m0,netdev=hn0,queue=tx,outdev=mirror0 \
    -object filter-redirector,id=redire0,netdev=hn0,queue=rx,indev=compare_out \
    -object filter-redirector,id=redire1,netdev=hn0,queue=rx,outdev=compare0
  if [ "$builtin" -eq 1 ]; then
    printf '%s\n' -chardev "socket,id=compare0-0,path=$dir/primary-in.sock" \
      -chardev "socket,id=compare1,path=$dir/secondary-in.sock,server=on,wait=off" \
      -chardev "socket,id=compare_out0,path=$dir/outdev.sock" \
      -object iothread,id=iothread1 \
      -object colo-compare,id=comp0,primary_in=compare0-0,secondary_in=compare1,outdev=compare_out0,iothread=iothread1
  fi
}

secondary_args() { # the secondary's QEMU arguments, one per line (the binary not included)
  guest_args secondary
  printf '%s\n' -name secondary -serial "file:$dir/secondary.serial" \
    -qmp "unix:$dir/secondary-qmp.sock,server=on,wait=off" \
    -qmp "unix:$dir/secondary-qmp-daemon.sock,server=on,wait=off" \
    -netdev tap,id=hn0,ifname=tap-sec,script=no,downscript=no,vhost=off,vnet_hdr=off \
    -chardev "socket,id=red0,path=$dir/mirror.sock,$reconnect" \
    -chardev "socket,id=red1,path=$dir/secondary-in.sock,$reconnect" \
    -object filter-redirector,id=f1,netdev=hn0,queue=tx,indev=red0 \
    -object filter-redirector,id=f2,netdev=hn0,queue=rx,outdev=red1 \
    -object filter-rewriter,id=rew0,netdev=hn0,queue=all \
    -incoming "unix:$dir/migrate.sock"
}

daemon_args() {
  printf '%s\n' \
    -chardev "socket,id=compare0-0,path=$dir/primary-in.sock" \
    -chardev "socket,id=compare1,path=$dir/secondary-in.sock,server=on,wait=off" \
    -chardev "socket,id=compare_out0,path=$dir/outdev.sock" \
    -object "colo-compare,id=comp0,primary_in=compare0-0,secondary_in=compare1,outdev=compare_out0,iothread=iothread1" \
    --qmp "unix:$dir/primary-qmp-daemon.sock" --secondary-qmp "unix:$dir/secondary-qmp-daemon.sock" \
    --restore-redirector redire0,before=redire1 --summary-interval "${COLO_SUMMARY_INTERVAL:-5}"
}

start_daemon() {
  [ -f "$dll" ] || die "the daemon is not built: $dll (dotnet build -c Release)"
  local args=()
  mapfile -t args < <(daemon_args)
  [ -f "$dir/daemon-extra.args" ] && mapfile -t -O "${#args[@]}" args < "$dir/daemon-extra.args"
  nohup dotnet "$dll" "${args[@]}" >> "$dir/daemon.log" 2>&1 < /dev/null &
  echo $! > "$dir/daemon.pid"
  # Ready when QEMU sees the daemon on the primary's compare0 (primary_in) and compare_out (outdev).
  wait_for 30 "the daemon to connect to the primary" chardev_connected "$dir/primary-qmp.sock" compare0 compare_out
  log "daemon running (PID $(cat "$dir/daemon.pid"), log $dir/daemon.log)"
}

cmd_start() {
  [ "$(id -u)" -eq 0 ] || die "needs root (network namespace, taps)"
  if [ -f "$dir/primary.pid" ] && alive "$dir/primary.pid"; then die "already running ($dir); stop it first"; fi
  has_namespace && die "namespace $ns exists; run: $0 stop --name $name"
  guest="$("$here/build-guest.sh")"
  if [ "$builtin" -eq 0 ] && [ ! -f "$dll" ] && [ -z "${COLO_COMPARE_DLL:-}" ]; then
    log "building the daemon"
    dotnet build "$repo/src/ColoCompareDaemon" -c Release -nologo -v quiet >&2
  fi
  [ -f "$dll" ] || die "the daemon is not built: $dll"
  local qemu_bin
  qemu_setup
  qemu_bin="$(qemu_binary)"

  # Reuse only a folder a pair made (or an empty one): COLO_PAIR_DIR could name anything.
  if [ -d "$dir" ] && [ -n "$(ls -A "$dir")" ] && [ ! -f "$dir/daemon-extra.args" ]; then
    die "$dir exists and is not a pair's state folder; choose another COLO_PAIR_DIR"
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  : > "$dir/daemon-extra.args"
  [ ${#daemon_extra[@]} -eq 0 ] || printf '%s\n' "${daemon_extra[@]}" > "$dir/daemon-extra.args"
  # A start that fails half-way leaves nothing running (the logs stay in $dir).
  trap 'rc=$?; if [ $rc -ne 0 ]; then log "start failed; stopping what was started"; cmd_stop; fi' EXIT

  # The namespace: a bridge with the client's address, the primary's tap on it, the secondary's beside it.
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$ns" link add br0 type bridge
  ip -n "$ns" addr add "$client_ip/24" dev br0
  ip -n "$ns" link set br0 up
  ip -n "$ns" tuntap add tap-pri mode tap
  ip -n "$ns" tuntap add tap-sec mode tap
  ip -n "$ns" link set tap-pri master br0
  ip -n "$ns" link set tap-pri up
  ip -n "$ns" link set tap-sec up

  local primary=() secondary=()
  mapfile -t primary < <(primary_args)
  mapfile -t secondary < <(secondary_args)
  primary=("$qemu_bin" "${primary[@]}")
  secondary=("$qemu_bin" "${secondary[@]}")
  # `ip netns exec` execs QEMU, so $! is QEMU's own PID.
  ip netns exec "$ns" "${primary[@]}" > "$dir/primary.log" 2>&1 < /dev/null &
  echo $! > "$dir/primary.pid"
  wait_for 120 "the primary guest to boot" guest_ready "$dir/primary.serial"
  log "primary guest ready (PID $(cat "$dir/primary.pid"))"

  if [ "$builtin" -eq 0 ]; then
    start_daemon
  fi

  ip netns exec "$ns" "${secondary[@]}" > "$dir/secondary.log" 2>&1 < /dev/null &
  echo $! > "$dir/secondary.pid"
  wait_for 30 "the secondary's red0/red1 to connect" chardev_connected "$dir/secondary-qmp.sock" red0 red1

  # x-colo on both sides: QEMU 10.0 refuses the migration stream's ENABLE_COLO on a secondary without it
  # ("x-colo capability is not set"); 7.2 takes it too. 11.1 also wants return-path with x-colo ("Capability
  # 'x-colo' requires capability 'return-path'").
  local which caps='{"capability":"x-colo","state":true},{"capability":"events","state":true}'
  version_at_least 11.0 && caps="{\"capability\":\"return-path\",\"state\":true},$caps"
  for which in secondary primary; do
    qmp "$dir/$which-qmp.sock" migrate-set-capabilities "{\"capabilities\":[$caps]}" >/dev/null
  done
  qmp "$dir/primary-qmp.sock" migrate-set-parameters "{\"x-checkpoint-delay\":$checkpoint_delay}" >/dev/null
  qmp "$dir/primary-qmp.sock" migrate "{\"uri\":\"unix:$dir/migrate.sock\"}" >/dev/null
  wait_for 120 "COLO to start (query-colo-status mode primary)" colo_mode_is "$dir/primary-qmp.sock" primary
  wait_for 30 "the secondary to enter COLO" colo_mode_is "$dir/secondary-qmp.sock" secondary

  cat > "$dir/pair.env" <<ENV
COLO_PAIR_NAME=$name
COLO_PAIR_DIR=$dir
COLO_PAIR_NAMESPACE=$ns
COLO_PAIR_BUILTIN=$builtin
COLO_PAIR_ACCEL=$accel
COLO_PAIR_QEMU=$qemu_bin
COLO_PAIR_QEMU_VERSION=$qemu_version
COLO_PAIR_GUEST_IP=$guest_ip
COLO_PAIR_CLIENT_IP=$client_ip
COLO_PAIR_GUEST_DIR=$guest
COLO_PAIR_PRIMARY_QMP=$dir/primary-qmp.sock
COLO_PAIR_SECONDARY_QMP=$dir/secondary-qmp.sock
COLO_PAIR_PRIMARY_PID=$(cat "$dir/primary.pid")
COLO_PAIR_SECONDARY_PID=$(cat "$dir/secondary.pid")
COLO_PAIR_DAEMON_PID=$(cat "$dir/daemon.pid" 2>/dev/null || echo 0)
COLO_PAIR_DAEMON_LOG=$dir/daemon.log
ENV
  if [ "$builtin" -eq 1 ]; then
    log "COLO running with QEMU's built-in colo-compare; client address $client_ip in namespace $ns, guest $guest_ip"
  else
    log "COLO running with the colo-compare daemon; client address $client_ip in namespace $ns, guest $guest_ip"
  fi
  trap - EXIT
  echo "$dir/pair.env"
}

cmd_stop() {
  stop_pid "$dir/secondary.pid"
  stop_pid "$dir/daemon.pid"
  stop_pid "$dir/primary.pid"
  if has_namespace; then ip netns del "$ns"; fi
  rm -f "$dir"/*.sock
  log "stopped (logs kept in $dir)"
}

cmd_status() {
  local which sock
  for which in primary daemon secondary; do
    if alive "$dir/$which.pid"; then echo "$which: running (PID $(cat "$dir/$which.pid"))"; else echo "$which: not running"; fi
  done
  for which in primary secondary; do
    sock="$dir/$which-qmp.sock"
    if alive "$dir/$which.pid"; then echo "$which COLO: $(qmp "$sock" query-colo-status 2>&1 || true)"; fi
  done
  if [ -f "$dir/daemon.log" ]; then
    echo "daemon: $(grep -F "colo-compare 'comp0': in " "$dir/daemon.log" | tail -n 1 | sed 's/.*comp0.: //')"
  fi
  alive "$dir/primary.pid"
}

case "$command" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  daemon-stop) stop_pid "$dir/daemon.pid" ;;
  qemu-args)
    # For launchers that start QEMU themselves (the container tests): the arguments, one per line, for the
    # state folder and guest of this pair; then the binary to run under $ACCEL.
    guest="$("$here/build-guest.sh")"
    qemu_setup
    case "${COLO_VM:-}" in
      primary) primary_args ;;
      secondary) secondary_args ;;
      daemon) daemon_args ;;
      binary) qemu_binary ;;
      *) die "qemu-args needs COLO_VM=primary|secondary|daemon|binary" ;;
    esac ;;
  takeover)
    # A persistent tap outlives its QEMU: without this the bridge keeps sending the guest's MAC to the dead one.
    ip -n "$ns" link set tap-pri nomaster
    ip -n "$ns" link set tap-pri down
    ip -n "$ns" link set tap-sec master br0
    log "tap-sec is on the bridge in place of tap-pri" ;;
  daemon-start)
    alive "$dir/daemon.pid" && die "the daemon is running already"
    start_daemon
    sed -i "s/^COLO_PAIR_DAEMON_PID=.*/COLO_PAIR_DAEMON_PID=$(cat "$dir/daemon.pid")/" "$dir/pair.env" ;;
  *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
