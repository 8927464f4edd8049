#!/usr/bin/env bash
# Sets up and runs every test: unit tests, tests against real QEMU, real COLO pairs (root: network namespaces) and
# the COLO pair in containers (the container engine is started here, without bridges, if none answers).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  exec sudo --preserve-env=PATH,HOME,DOTNET_ROOT,DOTNET_CLI_HOME "$0" "$@"
fi
scripts/install-deps.sh
scripts/start-docker.sh
export DOCKER_API_VERSION="${DOCKER_API_VERSION:-1.41}" TESTCONTAINERS_RYUK_DISABLED=true
# Containers the tests started and failed to remove (there is no Ryuk): only ours, by label.
cleanup() { docker ps -aq --filter label=colochardev | xargs -r docker rm -f >/dev/null 2>&1 || true; }
trap cleanup EXIT
dotnet test ColoChardev.sln -c Release -nologo --logger "console;verbosity=normal" "$@"
