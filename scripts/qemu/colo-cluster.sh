#!/usr/bin/env bash
# A two-node Pacemaker/Corosync cluster on one machine that runs one COLO VM (the tiny guest) through our resource
# agent, ocf:colochardev:colo (packaging/pacemaker), as a promotable clone. It needs root.
#
#   colo-cluster.sh start [--name NAME]    namespaces, both nodes, the resource; waits for COLO with the daemon
#   colo-cluster.sh kill-node [--name NAME] NODE  SIGKILL every process of node n1|n2 and cut its links (a node lost)
#   colo-cluster.sh start-node [--name NAME] NODE the node comes back: links up, Corosync and Pacemaker started again
#   colo-cluster.sh exec [--name NAME] NODE CMD... run CMD on a node (its network, mount and UTS namespaces)
#   colo-cluster.sh promoted [--name NAME]  the node the VM is promoted on
#   colo-cluster.sh stop [--name NAME]      every process of both nodes, by PID, then the namespaces
#
# Topology (addresses only inside namespaces this script creates):
#   NAME-cl   the client: br0 10.0.0.1/24, one port to each node's uplink
#   NAME-n1   node n1: br-vm (uplink + the VM's tap while it is primary), colo0 192.168.77.1/24 (Corosync and COLO)
#   NAME-n2   node n2: the same, colo0 192.168.77.2/24
# Each node runs in a mount and UTS namespace of its own (unshare), so that its /etc/corosync, /var/lib/pacemaker,
# /var/log/{corosync,pacemaker}, /run, /dev/shm and /usr/lib/ocf/resource.d are its own folders under the state
# folder (/tmp/colo-cluster-NAME, or $COLO_CLUSTER_DIR), and the daemon is at /usr/local/lib/colo-compare (where
# docs/operations.md installs it; here a bind mount of the build output, $COLO_COMPARE_DIR). The guest is 10.0.0.2.
# The VM has a replicated disk (parameter disk): /var/lib/colo-ha/vm1.raw on each node, the node's own file
# NODE/disks/vm1.raw in the state folder, made at start (16 MiB of zeros; COLO_CLUSTER_DISK_MB sets the size, 0 = no
# disk) and kept while a node is away, so a node that returns brings its stale copy.
# cluster.env in the state folder describes the running cluster (shell syntax).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
name=cc
command="${1:-}"
[ $# -gt 0 ] && shift
if [ "${1:-}" = --name ]; then name="${2:-}"; shift 2; fi
case "$name" in *[!a-z0-9]*|'') echo "colo-cluster: --name takes lower-case letters and digits" >&2; exit 2 ;; esac
[ ${#name} -le 6 ] || { echo "colo-cluster: --name is at most 6 characters (interface names)" >&2; exit 2; }
dir="${COLO_CLUSTER_DIR:-/tmp/colo-cluster-$name}"
[ -f "$dir/cluster.env" ] && . "$dir/cluster.env" && name="$COLO_CLUSTER_NAME"
compare_dir="${COLO_COMPARE_DIR:-$repo/src/ColoCompareDaemon/bin/Release/net10.0}"
guest="${COLO_GUEST_DIR:-$repo/.cache/guest}"
disk_mb="${COLO_CLUSTER_DISK_MB:-16}"
case "$disk_mb" in ''|*[!0-9]*) echo "colo-cluster: COLO_CLUSTER_DISK_MB is a whole number" >&2; exit 2 ;; esac

log() { echo "colo-cluster: $*" >&2; }
die() { log "$*"; exit 1; }

wait_for() { # wait_for SECONDS WHAT COMMAND...
  local seconds="$1" what="$2"; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "timed out after ${seconds}s waiting for $what"
    sleep 0.5
  done
}

node_pid() { cat "$dir/$1/node.pid" 2>/dev/null; }
node_exec() { # node_exec NODE CMD...: CMD in the node's namespaces
  local pid; pid="$(node_pid "$1")" && [ -d "/proc/$pid" ] || { log "node $1 is not running"; return 1; }
  shift
  nsenter -t "$pid" -m -u -n "$@"
}

# The node's own processes: those in its mount namespace (only this script creates it).
node_processes() {
  local pid ref p
  pid="$(node_pid "$1")" || return 0
  ref="$(readlink "/proc/$pid/ns/mnt" 2>/dev/null)" || return 0
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$ref" ] && echo "${p#/proc/}"
  done
  return 0
}

# Inside `ip netns exec NS unshare --mount --uts --propagation private`: the node's own folders, then Corosync and
# Pacemaker in the foreground of this process's children; it waits for them (its PID is node.pid).
node_main() {
  local node="$1" d="$dir/$1" e
  hostname "$node"
  mkdir -p "$d"/{var-lib-corosync,var-lib-pacemaker/{cib,pengine,blackbox,cores},var-log-corosync,var-log-pacemaker,usr-local-lib,disks}
  chown -R hacluster:haclient "$d/var-lib-pacemaker" "$d/var-log-pacemaker"
  chmod 750 "$d/var-lib-pacemaker/cib"
  mount --bind "$d/etc-corosync" /etc/corosync
  mount --bind "$d/var-lib-corosync" /var/lib/corosync
  mount --bind "$d/var-lib-pacemaker" /var/lib/pacemaker
  mount --bind "$d/var-log-corosync" /var/log/corosync
  mount --bind "$d/var-log-pacemaker" /var/log/pacemaker
  mount --bind "$d/ocf" /usr/lib/ocf/resource.d
  mkdir -p /var/lib/colo-ha && mount --bind "$d/disks" /var/lib/colo-ha
  mount -t tmpfs -o mode=1777 tmpfs /dev/shm
  mount -t tmpfs -o mode=755 tmpfs /run
  # /usr/local/lib with its own content plus colo-compare/
  mount --bind /usr/local/lib "$d/usr-local-lib"
  mount -t tmpfs -o mode=755 tmpfs /usr/local/lib
  for e in "$d/usr-local-lib"/*; do
    [ -e "$e" ] || continue
    mkdir -p "/usr/local/lib/${e##*/}" && mount --bind "$e" "/usr/local/lib/${e##*/}"
  done
  mkdir -p /usr/local/lib/colo-compare && mount --bind "$compare_dir" /usr/local/lib/colo-compare
  corosync -f >> "$d/corosync.out" 2>&1 &
  wait_for 20 "corosync on $node" corosync-cfgtool -s
  pacemakerd -f >> "$d/pacemakerd.out" 2>&1 &
  wait
}

start_node() {
  local node="$1"
  ip -n "$name-$node" link set colo0 up
  ip -n "$name-$node" link set uplink up
  rm -f "$dir/$node/node.pid"
  COLO_CLUSTER_DIR="$dir" COLO_COMPARE_DIR="$compare_dir" ip netns exec "$name-$node" \
    unshare --mount --uts --propagation private "$here/colo-cluster.sh" node-main "$node" >> "$dir/$node/node.out" 2>&1 &
  echo $! > "$dir/$node/node.pid"
  wait_for 60 "Pacemaker on $node" node_exec "$node" crm_mon -1
}

kill_node() {
  local node="$1" p
  for p in $(node_processes "$node"); do kill -9 "$p" 2>/dev/null || true; done
  ip -n "$name-$node" link set colo0 down 2>/dev/null || true
  ip -n "$name-$node" link set uplink down 2>/dev/null || true
  # Processes die asynchronously: wait until none is left (the VM's tap goes with its QEMU).
  local deadline=$((SECONDS + 20))
  while [ -n "$(node_processes "$node")" ] && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
  rm -f "$dir/$node/node.pid"
}

network_up() {
  local n
  for n in cl n1 n2; do ip netns add "$name-$n"; ip -n "$name-$n" link set lo up; done
  ip -n "$name-cl" link add br0 type bridge
  ip -n "$name-cl" addr add 10.0.0.1/24 dev br0
  ip -n "$name-cl" link set br0 up
  for n in n1 n2; do
    ip link add "$name-$n-u" type veth peer name "$name-$n-c"
    ip link set "$name-$n-u" netns "$name-$n"
    ip link set "$name-$n-c" netns "$name-cl"
    ip -n "$name-cl" link set "$name-$n-c" master br0 up
    ip -n "$name-$n" link add br-vm type bridge
    ip -n "$name-$n" link set br-vm up
    ip -n "$name-$n" link set "$name-$n-u" name uplink
    ip -n "$name-$n" link set uplink master br-vm up
  done
  ip link add "$name-l1" type veth peer name "$name-l2"
  ip link set "$name-l1" netns "$name-n1"
  ip link set "$name-l2" netns "$name-n2"
  ip -n "$name-n1" link set "$name-l1" name colo0
  ip -n "$name-n2" link set "$name-l2" name colo0
  ip -n "$name-n1" addr add 192.168.77.1/24 dev colo0
  ip -n "$name-n2" addr add 192.168.77.2/24 dev colo0
}

node_config() { # node's corosync.conf and resource agent folder
  local node="$1" d="$dir/$1"
  mkdir -p "$d/etc-corosync" "$d/ocf"
  cp -a /usr/lib/ocf/resource.d/. "$d/ocf/"
  install -D -m 0755 "$repo/packaging/pacemaker/colo" "$d/ocf/colochardev/colo"
  cp "$repo/packaging/pacemaker/corosync.conf.example" "$d/etc-corosync/corosync.conf"
}

resource_config() { # the crm shell configuration of the VM, for this machine's QEMU
  local qemu version mem disk=""
  if [ "${COLO_TCG_WORKAROUND:-on}" != off ]; then qemu="$("$here/qemu.sh" colo-tcg)"; else qemu="$("$here/qemu.sh" binary)"; fi
  version="$("$here/qemu.sh" version)"
  # Workaround 2 of docs/colo-pair.md: QEMU before 9.0 under TCG needs guest RAM that is not a multiple of 256 KiB.
  if [ "$(printf '%s\n%s\n' 9.0 "$version" | sort -V | head -n 1)" = 9.0 ]; then mem=128M; else mem=131064K; fi
  [ "$disk_mb" -eq 0 ] || disk=" disk=/var/lib/colo-ha/vm1.raw"
  cat <<EOF
property stonith-enabled=false no-quorum-policy=stop
primitive vm1 ocf:colochardev:colo \\
  params vm_name=vm1 node_addresses="n1=192.168.77.1 n2=192.168.77.2" qemu_binary="$qemu" \\
    qemu_options="-accel tcg -M pc -smp 1 -m $mem -nodefaults -no-reboot -kernel $guest/vmlinuz -initrd $guest/initramfs.img -append 'console=ttyS0 quiet panic=-1 colo_ip=10.0.0.2/24' -serial file:/run/colo-ha/vm1/serial.log" \\
    bridge=br-vm daemon_options="--summary-interval 1"$disk \\
  op monitor interval=3s role=Unpromoted timeout=20s \\
  op monitor interval=2s role=Promoted timeout=20s
clone vm1-clone vm1 meta promotable=true promoted-max=1 promoted-node-max=1 clone-max=2 clone-node-max=1 notify=true
EOF
}

promoted() { # the promoted node, asked of the first node that runs
  local n p
  for n in n1 n2; do
    p="$(node_pid "$n")" && [ -d "/proc/$p" ] || continue
    nsenter -t "$p" -m -u -n crm_resource --resource vm1-clone --locate 2>/dev/null | sed -n 's/.*running on: \(n[12]\) Promoted.*/\1/p' | head -n 1
    return 0
  done
}

colo_running() { # colo_running: the promoted node's QEMU says COLO primary
  local p; p="$(promoted)"; [ -n "$p" ] || return 1
  node_exec "$p" "$compare_dir/colo-compare" qmp unix:/run/colo-ha/vm1/qmp.sock query-colo-status | grep -q '"mode":"primary"'
}

case "$command" in
  start)
    [ "$(id -u)" -eq 0 ] || die "needs root (namespaces, mounts)"
    for t in corosync pacemakerd crm crm_mon nsenter unshare; do command -v "$t" >/dev/null || die "$t is missing (scripts/install-deps.sh)"; done
    [ -x "$compare_dir/colo-compare" ] || die "no colo-compare in $compare_dir (dotnet build -c Release)"
    [ -f "$guest/initramfs.img" ] || "$here/build-guest.sh" >&2
    [ ! -e "$dir/cluster.env" ] || die "a cluster '$name' runs already ($dir); stop it first"
    ! ip netns list | grep -q "^$name-" || die "namespaces $name-* exist already; colo-cluster.sh stop --name $name"
    mkdir -p "$dir"
    printf 'COLO_CLUSTER_NAME=%s\nCOLO_CLUSTER_DIR=%s\nCOLO_CLUSTER_CLIENT_NS=%s\nCOLO_CLUSTER_GUEST_IP=10.0.0.2\n' \
      "$name" "$dir" "$name-cl" > "$dir/cluster.env"
    network_up
    node_config n1
    node_config n2
    for n in n1 n2; do
      mkdir -p "$dir/$n/disks"
      [ "$disk_mb" -eq 0 ] || truncate -s "${disk_mb}M" "$dir/$n/disks/vm1.raw"
    done
    start_node n1
    start_node n2
    wait_for 60 "both nodes online" sh -c "'$here/colo-cluster.sh' exec --name $name n1 crm_mon -1 | grep -q 'Online: \[ n1 n2 \]'"
    resource_config > "$dir/vm1.crm"
    node_exec n1 crm configure load update "$dir/vm1.crm"
    wait_for 180 "COLO running with the daemon" colo_running
    # COLO may start while the guest still boots (the primary is protected as soon as the secondary waits).
    wait_for 120 "the guest to answer HTTP" ip netns exec "$name-cl" curl -s -m 2 -o /dev/null http://10.0.0.2/index.html
    log "COLO running: promoted on $(promoted); client namespace $name-cl, guest 10.0.0.2"
    ;;
  kill-node) kill_node "${1:?which node}" ;;
  start-node) start_node "${1:?which node}" ;;
  exec) node="${1:?which node}"; shift; node_exec "$node" "$@" ;;
  promoted) promoted ;;
  node-main) node_main "${1:?which node}" ;;
  stop)
    kill_node n1
    kill_node n2
    for n in cl n1 n2; do ip netns del "$name-$n" 2>/dev/null || true; done
    rm -f "$dir/cluster.env"
    log "stopped"
    ;;
  *) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
