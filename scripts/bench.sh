#!/usr/bin/env bash
# The side-by-side socket benchmark (issue 7): the same framed traffic, from one sender to one receiver, through
# QEMU's own colo-compare (standalone, -M none; 7.2, or QEMU_VERSION=10.0|11.1), our colo-compare daemon and a relay baseline, alternating,
# several runs each, medians. Prints every run, writes docs/benchmarks/socket-benchmark.{json,png} and, with
# --update-docs docs/performance.md, that document's benchmark section. Everything runs on 127.0.0.1.
#
#   ./scripts/bench.sh [--runs 3] [--scale 1] [--workloads tcp1454,...] [--targets qemu,daemon,relay] [--floods on|off]
#                      [--out DIR] [--update-docs docs/performance.md]
# About 15 minutes with the defaults on a 2-core machine (2 s of warm-up per run); --scale 0.05 --runs 1 about two.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
dotnet build bench/ColoChardev.SocketBenchmark -c Release -nologo -v quiet
exec dotnet bench/ColoChardev.SocketBenchmark/bin/Release/net10.0/socket-bench.dll "$@"
