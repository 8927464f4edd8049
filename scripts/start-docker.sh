#!/usr/bin/env bash
# Starts the container engine the way our machines allow (environment.md): no bridge, no iptables, no masquerading;
# containers get --network none or host only. Does nothing when an engine already answers.
set -euo pipefail
export DOCKER_HOST="${DOCKER_HOST:-unix:///var/run/docker.sock}"
if docker version >/dev/null 2>&1; then
  exit 0
fi
command -v dockerd >/dev/null || { echo "start-docker: dockerd is missing (scripts/install-deps.sh installs docker.io)" >&2; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
as_root sh -c 'nohup dockerd --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
  --host=unix:///var/run/docker.sock > /var/log/colochardev-dockerd.log 2>&1 < /dev/null &'
for _ in $(seq 100); do
  docker version >/dev/null 2>&1 && { echo "start-docker: engine ready ($(docker version -f '{{.Server.Version}}'))" >&2; exit 0; }
  sleep 0.2
done
echo "start-docker: dockerd did not answer within 20 s; see /var/log/colochardev-dockerd.log" >&2
exit 1
