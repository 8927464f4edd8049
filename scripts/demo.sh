#!/usr/bin/env bash
# The main job: installs what is missing, builds, and shows our chardev framing, endpoints and packet parser
# driving QEMU's own colo-compare with identical, re-segmented and diverging traffic.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
dotnet build tools/ColoDemo -c Release -nologo -v quiet
exec dotnet run --project tools/ColoDemo -c Release --no-build
