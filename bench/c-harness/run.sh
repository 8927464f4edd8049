#!/usr/bin/env bash
# The second benchmark harness (issue 17): colo-blast (C; an unwindowed sender and a forked receiver) against QEMU's
# colo-compare (standalone, -M none), our daemon and a relay in C (colo-relay), each started fresh for every run,
# alternating, medians. Shares no code with bench/ColoChardev.SocketBenchmark. Only 127.0.0.1.
#
#   bench/c-harness/run.sh [--runs 3] [--scale 1] [--workloads tcp1454,tcp1454x64,tcp64,udp64x64,vnet1454]
#                          [--targets qemu,daemon,relay] [--daemon "dotnet path/colo-compare.dll"] [--out FILE]
#
# Frames per run differ by target (QEMU is ~10x slower and has nothing to warm up); each run measures the frames after
# the first 40 % (the daemon's tiered compilation settles in its first second or two). About 8 minutes by default.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=3 scale=1 workloads=tcp1454,tcp1454x64,tcp64,udp64x64,vnet1454 targets=qemu,daemon,relay daemon="" out=/tmp/c-harness.txt
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --scale) scale=$2; shift 2 ;;
    --workloads) workloads=$2; shift 2 ;;
    --targets) targets=$2; shift 2 ;;
    --daemon) daemon=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

scripts/install-deps.sh >/dev/null
build=$(mktemp -d /tmp/c-harness.XXXXXX)
trap 'rm -rf "$build"' EXIT
gcc -O2 -Wall -Wextra -o "$build/colo-blast" bench/c-harness/colo-blast.c
gcc -O2 -Wall -Wextra -pthread -o "$build/colo-relay" bench/c-harness/colo-relay.c
if [ -z "$daemon" ]; then
  dotnet build src/ColoCompareDaemon -c Release -nologo -v quiet >/dev/null
  daemon="dotnet src/ColoCompareDaemon/bin/Release/net10.0/colo-compare.dll"
fi
qemu=${QEMU_BINARY:-qemu-system-x86_64}

# workload -> colo-blast options and frames (at scale 1) for the daemon and relay; QEMU gets a tenth (min 200k).
declare -A shape=([tcp1454]="-b 1454 -k 1" [tcp1454x64]="-b 1454 -k 64" [tcp64]="-b 64 -k 1" [udp64x64]="-b 64 -k 64 -u" [vnet1454]="-b 1454 -k 1 -v")
declare -A frames=([tcp1454]=2000000 [tcp1454x64]=2000000 [tcp64]=8000000 [udp64x64]=8000000 [vnet1454]=2000000)

port=22000
start_target() { # kind vnet -> sets pid
  local kind=$1 vnet=$2 p=$port
  local cc="colo-compare,id=cc0,primary_in=pri,secondary_in=sec,outdev=out,iothread=it,notify_dev=ntf,max_queue_size=8192$([ "$vnet" = 1 ] && echo ,vnet_hdr_support=on)"
  local chardevs=(-chardev "socket,id=pri,host=127.0.0.1,port=$p,server=on,wait=off" -chardev "socket,id=sec,host=127.0.0.1,port=$((p+1)),server=on,wait=off"
                  -chardev "socket,id=out,host=127.0.0.1,port=$((p+2)),server=on,wait=off" -chardev "socket,id=ntf,host=127.0.0.1,port=$((p+3)),server=on,wait=off")
  case $kind in
    qemu) "$qemu" -M none -nodefaults -display none -monitor none -serial none "${chardevs[@]}" -object iothread,id=it -object "$cc" >/dev/null 2>&1 & ;;
    daemon) $daemon "${chardevs[@]}" -object iothread,id=it -object "$cc" >/dev/null 2>&1 & ;;
    relay) "$build/colo-relay" "$p" "$((p+1))" "$((p+2))" >/dev/null 2>&1 & ;;
  esac
  pid=$!
}

: > "$out"
IFS=, read -r -a wl <<< "$workloads"
IFS=, read -r -a tg <<< "$targets"
for run in $(seq "$runs"); do
  for w in "${wl[@]}"; do
    [ -n "${shape[$w]:-}" ] || { echo "run.sh: unknown workload $w" >&2; exit 2; }
    for k in $(seq 0 $((${#tg[@]} - 1))); do
      t=${tg[$(( (k + run - 1) % ${#tg[@]} ))]}
      n=$(python3 -c "print(int(${frames[$w]} * $scale / (10 if '$t' == 'qemu' else 1)) or 1)")
      [ "$t" = qemu ] && [ "$n" -lt 200000 ] && n=200000
      vnet=0; case "${shape[$w]}" in *-v*) vnet=1 ;; esac
      port=$((port + 10)); [ $port -gt 22900 ] && port=22000
      start_target "$t" "$vnet"
      notify=(-n $((port+3))); [ "$t" = relay ] && notify=()
      order=(-O); [ "$t" = qemu ] && order=() # QEMU's UDP comparison reorders (spec 2.5): counted, not failed
      line=$("$build/colo-blast" -p "$port" -s $((port+1)) -o $((port+2)) "${notify[@]}" -f "$n" -w $((n * 2 / 5)) ${shape[$w]} "${order[@]}" -P "$pid" || true)
      kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
      echo "run=$run workload=$w target=$t $line" | tee -a "$out"
    done
  done
done

python3 - "$out" <<'PY'
import sys, statistics as st
rows = {}
for line in open(sys.argv[1]):
    head, _, error = line.partition(' error=')
    f = dict(kv.split('=', 1) for kv in head.split() if '=' in kv)
    rows.setdefault((f['workload'], f['target']), []).append((float(f.get('pps', 0)), float(f.get('cpu_us_per_frame', -1)), int(f.get('rss_kb', 0)), int(f.get('checkpoint_requests', 0)), error.strip(), int(f.get('reordered', 0))))
print(f"{'workload':11} {'target':7} {'pps (median)':>13} {'range':>23} {'x QEMU':>7} {'of relay':>9} {'CPU us/frame':>13} {'peak RSS':>9} {'requests':>9} {'reordered':>10}  failed runs")
for w in dict.fromkeys(k[0] for k in rows):
    med = {t: st.median(v[0] for v in rows[(w, t)]) for (ww, t) in rows if ww == w}
    for t in ('qemu', 'daemon', 'relay'):
        if (w, t) not in rows:
            continue
        v = rows[(w, t)]
        errors = sum(1 for x in v if x[4])
        print(f"{w:11} {t:7} {med[t]:>13,.0f} {min(x[0] for x in v):>11,.0f}-{max(x[0] for x in v):<11,.0f} "
              f"{(med[t] / med['qemu']) if med.get('qemu') else float('nan'):>6.2f}x {(100 * med[t] / med['relay']) if med.get('relay') else float('nan'):>8.0f}% "
              f"{st.median(x[1] for x in v):>13.2f} {st.median(x[2] for x in v) / 1024:>7.0f} MB {st.median(x[3] for x in v):>9.0f} {st.median(x[5] for x in v):>10.0f}  {errors}")
PY
