#!/usr/bin/env bash
# Builds the local container image the container tests run QEMU from, for QEMU_VERSION (see qemu.sh), with the
# patched copy for COLO under TCG (workaround 1 in qemu.sh) as /usr/bin/qemu-system-x86_64-colo-tcg. No registry,
# no base image: `docker import` of a tarball.
#   7.2 (this machine's QEMU): the binary with every library it and its modules load and its firmware (no shell inside).
#   10.0, 11.1: the Debian root qemu.sh made for it, as it is.
#
#   scripts/qemu/build-qemu-image.sh      # prints the image name; rebuilt only when QEMU or this script changes
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
log() { echo "build-qemu-image: $*" >&2; }

command -v docker >/dev/null || { log "docker is missing (scripts/install-deps.sh installs docker.io)"; exit 1; }
qroot="$("$here/qemu.sh" root)"
if [ "$qroot" != / ]; then
  src="$qroot/usr/bin/qemu-system-x86_64"
  patched="$qroot/usr/bin/qemu-system-x86_64-colo-tcg"
else
  src="$("$here/qemu.sh" binary)"
  patched="$("$here/qemu.sh" colo-tcg)"
fi
tag="colochardev-qemu:$(cat "$src" "$patched" "$0" | sha256sum | cut -c1-12)"
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag"
  exit 0
fi

if [ "$qroot" != / ]; then
  tar -C "$qroot" -c . | docker import -c 'ENTRYPOINT ["/usr/bin/qemu-system-x86_64"]' -m "colochardev QEMU from $qroot" - "$tag" >/dev/null
  log "built $tag from $qroot ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
  echo "$tag"
  exit 0
fi

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/bin" "$root/tmp" "$root/dev" "$root/proc" "$root/sys"
chmod 1777 "$root/tmp"
cp "$src" "$root/usr/bin/qemu-system-x86_64"
cp "$patched" "$root/usr/bin/qemu-system-x86_64-colo-tcg"
modules=/usr/lib/x86_64-linux-gnu/qemu
# Every shared library QEMU and its loadable modules need, with the dynamic loader.
for f in "$src" "$modules"/*.so; do
  ldd "$f" | awk '/=> \// { print $3 } /^[ \t]*\/lib64\// { print $1 }'
done | sort -u | while read -r lib; do
  cp --parents -L "$lib" "$root/"
done
# Modules and firmware (/usr/share/qemu links into seabios and ipxe), symlinks kept.
for d in "$modules" /usr/share/qemu /usr/share/seabios /usr/lib/ipxe; do
  if [ -e "$d" ]; then mkdir -p "$root$d" && cp -a "$d/." "$root$d/"; fi
done
tar -C "$root" -c . | docker import -c 'ENTRYPOINT ["/usr/bin/qemu-system-x86_64"]' -m "colochardev QEMU from $src" - "$tag" >/dev/null
log "built $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
echo "$tag"
