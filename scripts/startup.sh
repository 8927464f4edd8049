#!/usr/bin/env bash
# How fast the daemon starts comparing, built two ways (issue 17): the framework-dependent build that `dotnet build`
# gives (JIT) and the ReadyToRun build that `dotnet publish` gives. Each run starts a fresh process and measures, from
# the moment it was started: accepting on primary_in, the first frame pair out of outdev, a first divergence to
# DO_CHECKPOINT on notify_dev, the first 100,000 1,454-byte frames, and 100,000 more after 10 s idle (tiered
# compilation's instrumented code shows there), with the CPU used. Runs alternate; medians last. Only 127.0.0.1.
#
#   scripts/startup.sh [--runs 5]        # about 20 s per run
set -euo pipefail
cd "$(dirname "$0")/.."
runs=5
[ "${1:-}" = --runs ] && runs=$2
dotnet build bench/ColoChardev.SocketBenchmark -c Release -nologo -v quiet >/dev/null
published=$(mktemp -d /tmp/colo-r2r.XXXXXX)
trap 'rm -rf "$published"' EXIT
dotnet publish src/ColoCompareDaemon -c Release -o "$published" -nologo -v quiet >/dev/null
bench="dotnet bench/ColoChardev.SocketBenchmark/bin/Release/net10.0/socket-bench.dll startup --runs 1"
jit="dotnet src/ColoCompareDaemon/bin/Release/net10.0/colo-compare.dll"
for run in $(seq "$runs"); do
  $bench --port 21400 $jit | sed -n 1p | sed "s/^run 1 /jit  /"
  $bench --port 21420 "$published/colo-compare" | sed -n 1p | sed "s/^run 1 /r2r  /"
done | tee /tmp/startup.txt
python3 - <<'PY'
import re, statistics as st
rows = {}
for line in open('/tmp/startup.txt'):
    kind = line.split()[0]
    numbers = [float(x) for x in re.findall(r'(\d+(?:\.\d+)?) (?:ms|s|MB)', line)]
    rows.setdefault(kind, []).append(numbers)
names = ['accepting ms', 'first out ms', 'diverge->req ms', 'first 100k ms', 'warm 100k ms', 'CPU s', 'peak RSS MB']
print('median of %d runs' % len(next(iter(rows.values()))))
print(f"{'':5}" + ''.join(f"{n:>16}" for n in names))
for kind, values in rows.items():
    print(f"{kind:5}" + ''.join(f"{st.median(v[i] for v in values):>16.1f}" for i in range(len(names))))
PY
