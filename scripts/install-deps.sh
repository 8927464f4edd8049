#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh Debian 12 machine: QEMU 7.2 from Debian (and, for
# QEMU_VERSION=10.0 or 11.1, that QEMU in a Debian root: scripts/qemu/qemu.sh) and the tools the COLO pair scripts use
# (the guest's kernel and busybox are downloaded by scripts/qemu/build-guest.sh).
# The .NET 10 SDK is expected on the machine (dotnet on PATH).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v dotnet >/dev/null 2>&1; then
  echo "install-deps: the .NET 10 SDK (dotnet) is not on PATH; install it first" >&2
  exit 1
fi

missing=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
command -v qemu-img >/dev/null 2>&1 || missing+=(qemu-utils)
# The COLO pair (scripts/qemu): ip for the namespace, readelf for the TCG workaround, gzip for the guest image.
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v readelf >/dev/null 2>&1 || missing+=(binutils)
command -v gzip >/dev/null 2>&1 || missing+=(gzip)
# The systemd unit's test runs systemd-analyze verify (packaging/systemd).
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# Divergence captures are read back with tshark (docs/operations.md); the tests do that.
command -v tshark >/dev/null 2>&1 || missing+=(tshark)
# The container engine for the container tests (Engine 20.10, API 1.41); scripts/start-docker.sh starts it.
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
# The second benchmark harness (bench/c-harness) and its test are C: gcc and libc's headers.
command -v gcc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
# The Pacemaker resource agent (packaging/pacemaker) and its two-node cluster test: Corosync, Pacemaker, crmsh,
# ocf-tester (resource-agents) and the xmllint it validates meta-data with. No daemon is started by the install on
# a machine without systemd; scripts/qemu/colo-cluster.sh runs its own nodes in namespaces.
command -v corosync >/dev/null 2>&1 || missing+=(corosync)
command -v pacemakerd >/dev/null 2>&1 || missing+=(pacemaker pacemaker-cli-utils)
command -v crm >/dev/null 2>&1 || missing+=(crmsh)
command -v ocf-tester >/dev/null 2>&1 || missing+=(resource-agents)
command -v xmllint >/dev/null 2>&1 || missing+=(libxml2-utils)
# QEMU 10.0 and 11.1 come from Debian roots that scripts/qemu/qemu.sh makes with debootstrap.
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  # A third-party source that cannot be reached must not stop us: Debian's own mirror is what we need.
  as_root apt-get update -q || echo "install-deps: apt-get update reported errors; trying the install anyway" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  # Under systemd the packages start a one-node cluster of the host with Debian's example corosync.conf; the tests
  # never use it (their nodes live in namespaces), so what this run installed does not stay running.
  if [ -d /run/systemd/system ]; then
    for unit in pacemaker corosync; do
      case " ${missing[*]} " in *" $unit "*) as_root systemctl disable --now "$unit" >/dev/null 2>&1 || true ;; esac
    done
  fi
fi

# The QEMU that QEMU_VERSION names (7.2, this machine's, by default), built or upgraded from the mirror if needed.
echo "install-deps: QEMU ${QEMU_VERSION:-7.2}: $("$here/qemu/qemu.sh" update && "$("$here/qemu/qemu.sh" binary)" --version | head -n 1)"
dotnet --version
