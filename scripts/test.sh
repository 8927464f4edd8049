#!/usr/bin/env bash
# Sets up and runs every test: unit tests, tests against real QEMU, real COLO pairs (root: network namespaces) and
# the COLO pair in containers (the container engine is started here, without bridges, if none answers).
#
# QEMU versions: QEMU_VERSIONS (default "7.2 10.0 11.1", see scripts/qemu/qemu.sh). The whole solution runs against
# the first; the tests that start QEMU (trait Qemu=real: the QMP client, QEMU's own colo-compare side by side with
# the daemon, the redirector, the COLO pairs in processes and in containers with both failovers and the daemon
# restart, the benchmark smoke run) run again against each of the others. The rest never start QEMU, so one run
# says all they can. Arguments go to every `dotnet test`.
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
read -r -a versions <<< "${QEMU_VERSIONS:-7.2 10.0 11.1}"
for v in "${versions[@]}"; do
  QEMU_VERSION="$v" scripts/qemu/qemu.sh update
done
echo "test: QEMU ${versions[0]}: every test"
QEMU_VERSION="${versions[0]}" dotnet test ColoChardev.sln -c Release -nologo --logger "console;verbosity=normal" "$@"
for v in "${versions[@]:1}"; do
  echo "test: QEMU $v: the tests that start QEMU"
  QEMU_VERSION="$v" dotnet test tests/Integration -c Release -nologo --no-build --filter "Qemu=real" --logger "console;verbosity=normal" "$@"
done
