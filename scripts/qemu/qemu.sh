#!/usr/bin/env bash
# The QEMU that the pair scripts, the standalone colo-compare fixtures, the demo and the benchmarks run, chosen by
# QEMU_VERSION:
#
#   7.2 (default)   Debian 12's qemu-system-x86, installed on this machine (scripts/install-deps.sh)
#   10.0            Debian 13's (trixie) qemu-system-x86
#   11.1            Debian trixie-backports' qemu-system-x86 (the newest upstream series on the mirror)
#   /path/to/qemu-system-x86_64   any other build, run as it is
#
# 10.0 and 11.1 need trixie's C library, so each lives in a root of its own, made with debootstrap from the Debian
# mirror this machine's apt uses (.cache/qemu/VERSION/root, ~450 MB, ~40 s once) and kept until the package on the
# mirror changes (`update`). It runs with that root's dynamic loader and libraries, not in a chroot: every host path
# on its command line stays valid, and its PID is QEMU's own (the wrapper execs it), so network namespaces, taps and
# PID checks work as with the host's QEMU. The same root is the container image's (build-qemu-image.sh).
#
#   scripts/qemu/qemu.sh binary     the qemu-system-x86_64 to run (for 10.0/11.1 a wrapper script)
#   scripts/qemu/qemu.sh colo-tcg   the same QEMU with the TCG workaround for COLO applied (below)
#   scripts/qemu/qemu.sh version    its version, e.g. 10.0.13
#   scripts/qemu/qemu.sh root       the root it comes from (/ for the host's)
#   scripts/qemu/qemu.sh update     builds the root if missing, or upgrades it when the mirror has a newer package
#
# Workaround 1 (TCG only): QEMU 7.2 to 10.x deadlock the primary at its first COLO checkpoint under TCG:
# colo_do_checkpoint_transaction() reaches memory_global_after_dirty_log_sync() -> TCG's run_on_cpu() without the
# BQL and returns owning it. Upstream fix: Lukas Straub, "colo: Hold the BQL while sending ram state" (series v8,
# 2026-02-10), in 11.x: Debian's 11.1.3 checkpoints under TCG unpatched, so for 11.x `colo-tcg` is the stock binary.
# Before 11.0 we run a copy whose memory_global_after_dirty_log_sync() returns at once; its only listener is TCG's
# after-sync hook, irrelevant while the VM is stopped for a checkpoint. 7.2's function opens with push %rbx (0x53),
# which becomes ret (0xc3); Debian builds 10.0 with CET, so there the function opens with endbr64 (f3 0f 1e fa) and
# the ret goes on the push four bytes later. The copy sits next to the original so that QEMU finds its firmware
# relative to itself (for the host's QEMU: PREFIX/usr/bin with PREFIX/usr/share and PREFIX/usr/lib links).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="$repo/.cache/qemu"
version="${QEMU_VERSION:-7.2}"

log() { echo "qemu.sh: $*" >&2; }
die() { log "$*"; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# The Debian suites a version comes from: the root's suite, then the suite its qemu-system-x86 is installed from.
suites_of() {
  case "$1" in
    10.0) echo "trixie trixie" ;;
    11.1) echo "trixie trixie-backports" ;;
    *) return 1 ;;
  esac
}

# The Debian mirror this machine's apt uses (DEBIAN_MIRROR overrides it).
mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local m
  m="$(grep -hoE '(URIs:|deb)[[:space:]]+https?://[^[:space:]]+/debian/?([[:space:]]|$)' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '{ print $2 }' | sed -n 1p || true)"
  echo "${m:-http://deb.debian.org/debian}"
}

# needs_workaround COMMAND...: whether that QEMU deadlocks at a COLO checkpoint under TCG (before 11.0).
# version_of COMMAND...: the x.y.z that COMMAND --version prints (read whole: no pipe for QEMU to break).
version_of() {
  local out
  out="$("$@" --version)"
  out="${out%%$'\n'*}"
  echo "$out" | sed -E 's/.*version ([0-9.]+).*/\1/'
}

needs_workaround() {
  local v
  v="$(version_of "$@")"
  [ "$(printf '11.0\n%s\n' "$v" | sort -V | head -n 1)" != 11.0 ]
}

# patch_tcg SOURCE TARGET: TARGET = SOURCE with workaround 1 applied.
patch_tcg() {
  local src="$1" target="$2" vaddr va off type o v fsize bytes
  command -v readelf >/dev/null || die "readelf is missing (apt-get install binutils; scripts/install-deps.sh does it)"
  vaddr="$(readelf --dyn-syms -W "$src" | awk '$8 == "memory_global_after_dirty_log_sync" && !found { print $2; found = 1 }')"
  [ -n "$vaddr" ] || die "memory_global_after_dirty_log_sync not found in $src: cannot apply the TCG workaround"
  va=$((16#$vaddr)); off=
  while read -r type o v _ fsize _; do
    [ "$type" = LOAD ] || continue
    if [ "$va" -ge $((v)) ] && [ "$va" -lt $((v + fsize)) ]; then off=$((va - v + o)); break; fi
  done < <(readelf -lW "$src")
  [ -n "$off" ] || die "no LOAD segment holds memory_global_after_dirty_log_sync in $src"
  bytes="$(od -An -tx1 -j "$off" -N5 "$src" | tr -d ' \n')"
  case "$bytes" in
    53*) ;;
    f30f1efa53) off=$((off + 4)) ;;
    *) die "memory_global_after_dirty_log_sync in $src starts with $bytes, not push %rbx (53) or endbr64; push %rbx (f30f1efa53): this QEMU build is not one the workaround was made for" ;;
  esac
  cp "$src" "$target.tmp"
  printf '\xc3' | dd of="$target.tmp" bs=1 seek="$off" conv=notrunc status=none
  mv "$target.tmp" "$target"
  log "TCG workaround: patched copy of $src at $target (offset $off)"
}

# ---- the host's QEMU, or a binary named by path ----

host_binary() {
  local b
  if [ "$version" = 7.2 ]; then
    b="$(command -v qemu-system-x86_64)" || die "qemu-system-x86_64 is not installed (scripts/install-deps.sh)"
    b="$(readlink -f "$b")"
    case "$("$b" --version)" in
      *"version 7.2."*) ;;
      *) die "QEMU_VERSION=7.2 but $b is $("$b" --version | sed -n 1p); give its path in QEMU_VERSION instead" ;;
    esac
  else
    b="$(readlink -f "$version")"
    [ -x "$b" ] || die "QEMU_VERSION=$version is not an executable"
  fi
  echo "$b"
}

host_colo_tcg() {
  local src sum prefix bin
  src="$(host_binary)"
  if ! needs_workaround "$src"; then echo "$src"; return; fi
  sum="$(sha256sum "$src" | cut -c1-16)"
  prefix="$cache/colo-tcg-$sum"
  bin="$prefix/usr/bin/qemu-system-x86_64"
  if [ ! -x "$bin" ]; then
    mkdir -p "$prefix/usr/bin"
    ln -sfn "$(dirname "$(dirname "$src")")/share" "$prefix/usr/share"
    ln -sfn "$(dirname "$(dirname "$src")")/lib" "$prefix/usr/lib"
    patch_tcg "$src" "$bin"
  fi
  echo "$bin"
}

# ---- a Debian root of its own ----

dir="$cache/$version"
root="$dir/root"

root_installed() { # the qemu-system-x86 version installed in the root
  chroot "$root" dpkg-query -W -f '${Version}' qemu-system-x86 2>/dev/null
}

write_wrapper() { # write_wrapper NAME BINARY-IN-ROOT
  local lib="$root/usr/lib/x86_64-linux-gnu"
  cat > "$dir/bin/$1.tmp" <<WRAPPER
#!/bin/sh
# QEMU $(root_installed) from Debian ($(cat "$dir/suites")), run with its root's loader and libraries (scripts/qemu/qemu.sh).
QEMU_MODULE_DIR='$lib/qemu'
export QEMU_MODULE_DIR
exec '$root/lib64/ld-linux-x86-64.so.2' --library-path '$lib' --argv0 qemu-system-x86_64 '$root$2' \\
  -L '$root/usr/share/qemu' -L '$root/usr/share/seabios' -L '$root/usr/lib/ipxe/qemu' "\$@"
WRAPPER
  chmod +x "$dir/bin/$1.tmp"
  mv "$dir/bin/$1.tmp" "$dir/bin/$1"
}

finish_root() { # the patched copy next to the original, the wrappers, the stamp
  local sum
  sum="$(sha256sum "$root/usr/bin/qemu-system-x86_64" | cut -c1-16)"
  if [ "$(cat "$dir/colo-tcg.sum" 2>/dev/null)" != "$sum" ] || [ ! -e "$root/usr/bin/qemu-system-x86_64-colo-tcg" ]; then
    rm -f "$root/usr/bin/qemu-system-x86_64-colo-tcg"
    if needs_workaround "$root/lib64/ld-linux-x86-64.so.2" --library-path "$root/usr/lib/x86_64-linux-gnu" "$root/usr/bin/qemu-system-x86_64"; then
      patch_tcg "$root/usr/bin/qemu-system-x86_64" "$root/usr/bin/qemu-system-x86_64-colo-tcg"
    else
      # The fix is in: the same binary under the name the container pair runs.
      ln -s qemu-system-x86_64 "$root/usr/bin/qemu-system-x86_64-colo-tcg"
    fi
    echo "$sum" > "$dir/colo-tcg.sum"
  fi
  mkdir -p "$dir/bin"
  write_wrapper qemu-system-x86_64 /usr/bin/qemu-system-x86_64
  write_wrapper qemu-system-x86_64-colo-tcg /usr/bin/qemu-system-x86_64-colo-tcg
  root_installed > "$dir/stamp"
  case "$(cat "$dir/stamp")" in
    "1:$version."*) ;;
    *) log "warning: QEMU_VERSION=$version installed qemu-system-x86 $(cat "$dir/stamp") from $(cut -d' ' -f2 "$dir/suites"): the mirror moved on; name the new series in qemu.sh's suites_of" ;;
  esac
}

build_root() {
  local base install
  read -r base install < <(suites_of "$version")
  [ "$(id -u)" -eq 0 ] || die "building the QEMU $version root needs root (debootstrap, chroot); run it as root once"
  command -v debootstrap >/dev/null || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >&2 \
    || die "debootstrap is missing and could not be installed"
  rm -rf "$dir"
  mkdir -p "$dir"
  log "building the QEMU $version root from $(mirror) ($base, qemu-system-x86 from $install) in $root"
  debootstrap --variant=minbase "$base" "$root.tmp" "$(mirror)" > "$dir/debootstrap.log" 2>&1 \
    || { tail -n 20 "$dir/debootstrap.log" >&2; die "debootstrap $base failed (log $dir/debootstrap.log)"; }
  if [ "$install" != "$base" ]; then
    echo "deb $(mirror) $install main" > "$root.tmp/etc/apt/sources.list.d/$install.list"
  fi
  chroot "$root.tmp" sh -c "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -t $install qemu-system-x86 && apt-get clean" \
    > "$dir/install.log" 2>&1 || { tail -n 20 "$dir/install.log" >&2; die "installing qemu-system-x86 from $install failed (log $dir/install.log)"; }
  mv "$root.tmp" "$root"
  echo "$base $install" > "$dir/suites"
  finish_root
  log "QEMU $(cat "$dir/stamp") ready in $root ($(du -sh "$root" | cut -f1))"
}

update_root() {
  local install candidate
  read -r _ install < "$dir/suites"
  chroot "$root" apt-get update -q > "$dir/update.log" 2>&1 || { log "apt-get update in $root failed; keeping $(cat "$dir/stamp")"; return 0; }
  candidate="$(chroot "$root" apt-cache policy qemu-system-x86 | awk '/Candidate:/ { print $2 }')"
  if [ -n "$candidate" ] && [ "$candidate" != "$(root_installed)" ]; then
    log "upgrading QEMU $version in $root: $(root_installed) -> $candidate"
    chroot "$root" sh -c "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -t $install qemu-system-x86 && apt-get clean" \
      >> "$dir/update.log" 2>&1 || die "upgrading qemu-system-x86 in $root failed (log $dir/update.log)"
    finish_root
  fi
}

ensure_root() {
  mkdir -p "$cache"
  exec 9>"$cache/.lock-$version"
  flock 9
  if [ ! -f "$dir/stamp" ] || [ ! -x "$dir/bin/qemu-system-x86_64" ]; then
    build_root
  elif [ "${1:-}" = update ]; then
    update_root
  fi
  exec 9>&-
}

command="${1:-}"
case "$version" in
  7.2|/*)
    case "$command" in
      binary) host_binary ;;
      colo-tcg) host_colo_tcg ;;
      version) version_of "$(host_binary)" ;;
      root) echo / ;;
      update) host_binary > /dev/null ;;
      *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac ;;
  *)
    suites_of "$version" > /dev/null || die "QEMU_VERSION=$version: known are 7.2 (this machine's), 10.0 (Debian trixie), 11.1 (trixie-backports) or a path to a qemu-system-x86_64"
    case "$command" in
      binary) ensure_root; echo "$dir/bin/qemu-system-x86_64" ;;
      colo-tcg) ensure_root; echo "$dir/bin/qemu-system-x86_64-colo-tcg" ;;
      version) ensure_root; version_of "$dir/bin/qemu-system-x86_64" ;;
      root) ensure_root; echo "$root" ;;
      update) ensure_root update ;;
      *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac ;;
esac
