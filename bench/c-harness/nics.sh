#!/usr/bin/env bash
# Multi-NIC scaling (issue 17): one daemon with N NICs (N -object colo-compare, each with its own four loopback
# chardevs), N colo-blast instances at once, one per NIC, sharing --frames between them (so every run moves as many
# and warms up alike); aggregate frames/s over the wall time of all of them and the daemon's CPU (cores) meanwhile.
# Fresh daemon per run; N alternates within each round. Only 127.0.0.1.
#
#   bench/c-harness/nics.sh [--nics 1,2,4] [--runs 3] [--frames 4000000] [--shape "-b 1454 -k 64"] [--daemon "dotnet path/colo-compare.dll"]
#
# The generators run on the same cores as the daemon: on a 2-core machine the figures show how far the NICs proceed in
# parallel (the daemon's socket engines: one epoll thread per core) against generators that want the CPU too.
set -euo pipefail
cd "$(dirname "$0")/../.."
nics=1,2,4 runs=3 frames=4000000 shape="-b 1454 -k 64" daemon=""
while [ $# -gt 0 ]; do
  case "$1" in
    --nics) nics=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --frames) frames=$2; shift 2 ;;
    --shape) shape=$2; shift 2 ;;
    --daemon) daemon=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "nics.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

scripts/install-deps.sh >/dev/null
build=$(mktemp -d /tmp/c-harness-nics.XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$build"; }
trap cleanup EXIT
gcc -O2 -Wall -Wextra -o "$build/colo-blast" bench/c-harness/colo-blast.c
if [ -z "$daemon" ]; then
  dotnet build src/ColoCompareDaemon -c Release -nologo -v quiet >/dev/null
  daemon="dotnet src/ColoCompareDaemon/bin/Release/net10.0/colo-compare.dll"
fi

base=23000
IFS=, read -r -a counts <<< "$nics"
for run in $(seq "$runs"); do
  for n in "${counts[@]}"; do
    base=$((base + 100)); [ $base -gt 28000 ] && base=23100
    args=()
    for k in $(seq 0 $((n - 1))); do
      p=$((base + k * 10))
      args+=(-chardev "socket,id=pri$k,host=127.0.0.1,port=$p,server=on,wait=off" -chardev "socket,id=sec$k,host=127.0.0.1,port=$((p+1)),server=on,wait=off"
             -chardev "socket,id=out$k,host=127.0.0.1,port=$((p+2)),server=on,wait=off" -chardev "socket,id=ntf$k,host=127.0.0.1,port=$((p+3)),server=on,wait=off"
             -object "iothread,id=it$k" -object "colo-compare,id=cc$k,primary_in=pri$k,secondary_in=sec$k,outdev=out$k,iothread=it$k,notify_dev=ntf$k,max_queue_size=8192")
    done
    $daemon "${args[@]}" > "$build/daemon.log" 2>&1 &
    pid=$!
    for _ in $(seq 50); do grep -q "Application started" "$build/daemon.log" && break; sleep 0.1; done
    cpu0=$(awk '{print $14 + $15}' "/proc/$pid/stat"); t0=$(date +%s.%N)
    blasts=()
    for k in $(seq 0 $((n - 1))); do
      p=$((base + k * 10))
      # shellcheck disable=SC2086
      "$build/colo-blast" -p "$p" -s $((p+1)) -o $((p+2)) -n $((p+3)) -f $((frames / n)) -w 1 $shape -O > "$build/blast-$k.txt" &
      blasts+=($!)
    done
    failed=0
    for b in "${blasts[@]}"; do wait "$b" || failed=$((failed + 1)); done
    t1=$(date +%s.%N); cpu1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""
    python3 -c "w = $t1 - $t0; print(f'run=$run nics=$n aggregate_pps={$n * ($frames // $n) / w:.0f} wall_seconds={w:.2f} daemon_cores={($cpu1 - $cpu0) / 100 / w:.2f} failed_blasts=$failed')"
  done
done
