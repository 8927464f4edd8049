#!/usr/bin/env bash
# Side-by-side figures of a real COLO pair, QEMU's built-in colo-compare against our daemon, in one run: time to
# download 16 MiB over HTTP, TCP echo round trip p50/p99, checkpoints per minute at idle and under load.
# Prints figures (recorded in docs/performance.md); it is not a test.
#
#   scripts/qemu/measure-pair.sh [--rounds N] [--idle-seconds S] [--load-seconds S] [--echoes N]
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/install-deps.sh >/dev/null
dotnet build tools/ColoDemo -c Release -nologo -v quiet >/dev/null
exec dotnet run --project tools/ColoDemo -c Release --no-build -- measure "$@"
