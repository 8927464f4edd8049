#!/usr/bin/env bash
# The soak run (issue 14): a real COLO pair with the daemon for a long while under continuous HTTP and echo traffic,
# a forced divergence every few seconds, the daemon restarted every few minutes and the secondary's chardev
# connection dropped and restored in between. Samples the daemon's RSS, open descriptors and threads each minute,
# checks each daemon instance's accounting at its stop, prints figures and writes docs/benchmarks/soak.png.
# Prints figures (recorded in docs/performance.md); it is not a test. Exit 1 if a transfer was altered or the
# accounting did not hold.
#
#   scripts/qemu/soak.sh [--minutes 30] [--restart-every 300] [--diverge-every 5] [--drop-every 90] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/install-deps.sh >/dev/null
dotnet build src/ColoCompareDaemon -c Release -nologo -v quiet >/dev/null
dotnet build tools/ColoDemo -c Release -nologo -v quiet >/dev/null
exec dotnet run --project tools/ColoDemo -c Release --no-build -- soak "$@"
