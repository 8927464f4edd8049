#!/usr/bin/env bash
# The main job: installs what is missing, builds, starts a real COLO pair (two QEMU VMs running a tiny Linux guest)
# with our colo-compare daemon in place of QEMU's -object colo-compare, drives traffic from a client in the pair's
# network namespace (ping, a 4 MiB download, TCP echo, a forced divergence), prints what the client saw, what the
# daemon compared and released and the checkpoints QEMU made, and stops everything. Then the same framed traffic
# through QEMU's own colo-compare and through the daemon, side by side.
#
#   ./scripts/demo.sh [all|pair|standalone]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  # Network namespaces and taps need root.
  exec sudo --preserve-env=PATH,HOME,DOTNET_ROOT,DOTNET_CLI_HOME "$0" "$@"
fi
scripts/install-deps.sh
scripts/qemu/build-guest.sh >/dev/null
dotnet build tools/ColoDemo -c Release -nologo -v quiet
exec dotnet run --project tools/ColoDemo -c Release --no-build -- "$@"
