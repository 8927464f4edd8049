#!/usr/bin/env bash
# Sets up and runs every test: unit tests and the tests against real QEMU.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
exec dotnet test ColoChardev.sln -c Release -nologo --logger "console;verbosity=normal" "$@"
