#!/usr/bin/env bash
# Builds the tiny Linux guest the COLO pair runs: Debian's cloud kernel plus a busybox initramfs.
#
#   scripts/qemu/build-guest.sh            # prints the guest directory; rebuilds only when an input changed
#
# Output (default .cache/guest in the repository, or $COLO_GUEST_DIR):
#   vmlinuz          the kernel (linux-image-6.1.0-*-cloud-amd64, the newest apt offers)
#   initramfs.img    gzip'd newc cpio with busybox, the virtio-net modules and /init, followed by an uncompressed
#                    cpio holding /www/payload.bin (the kernel unpacks concatenated archives)
#   payload.bin      16 MiB of random bytes, the file the guest serves over HTTP (tests compare against it)
#   busybox          the static busybox, also used on the host as the client inside the namespace (ping, wget, nc)
#   stamp            what the build was made from
#
# The guest, at boot (address from the kernel parameter colo_ip=ADDR/PREFIX on eth0):
#   - HTTP on port 80 (busybox httpd): /payload.bin (16 MiB), /4m.bin (its first 4 MiB), /index.html
#   - GET /cgi-bin/vm answers "<vm-name> <32 hex digits from /dev/urandom>", where <vm-name> comes from the QEMU
#     command line (-fw_cfg name=opt/colochardev/vm,string=NAME, padded with spaces to 12 characters: the guest learns
#     the size once, at boot) and is read from the device on every request, so a
#     primary and a secondary answer differently even right after a checkpoint made their memory identical:
#     divergence on demand.
#   - GET /cgi-bin/disk?SLOT=TEXT writes TEXT (letters and digits) to 512-byte sector SLOT of /dev/vda, flushed;
#     GET /cgi-bin/disk?SLOT drops the page cache and reads the sector back from the disk: "disk SLOT TEXT" (or
#     "no disk"). The replicated disk's test writes on one node and reads on the other after a failover.
#   - TCP echo on port 7 (busybox nc -ll -e /bin/cat)
#   - prints COLO-GUEST-READY on ttyS0 once all of that listens.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${COLO_GUEST_DIR:-$repo/.cache/guest}"
mkdir -p "$out"
# One build at a time: a test reading payload.bin must see the build its guest booted from.
exec 9>"$out/.lock"
flock 9

log() { echo "build-guest: $*" >&2; }

kernel_package() {
  apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-cloud-amd64$' 2>/dev/null | awk '{print $1}' | sort -V | tail -n 1
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

kpkg="$(kernel_package)"
if [ -z "$kpkg" ]; then
  log "apt knows no cloud kernel yet; running apt-get update"
  as_root apt-get update -q >&2 || log "apt-get update reported errors; trying anyway"
  kpkg="$(kernel_package)"
fi
[ -n "$kpkg" ] || { log "no linux-image-6.1.0-*-cloud-amd64 package available from apt"; exit 1; }
kver="$(apt-cache policy "$kpkg" | awk '/Candidate:/ {print $2}')"
bver="$(apt-cache policy busybox-static | awk '/Candidate:/ {print $2}')"
[ -n "$bver" ] && [ "$bver" != "(none)" ] || { log "busybox-static is not available from apt"; exit 1; }

# Everything the image depends on: the two package versions and this script (it holds /init and the services).
stamp="$kpkg=$kver busybox-static=$bver script=$(sha256sum "$0" | cut -c1-16)"
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ] \
   && [ -f "$out/vmlinuz" ] && [ -f "$out/initramfs.img" ] && [ -f "$out/payload.bin" ] && [ -x "$out/busybox" ]; then
  echo "$out"
  exit 0
fi
log "building from $stamp"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download "$kpkg" busybox-static >/dev/null 2>&1) \
  || (cd "$work" && apt-get download "$kpkg" busybox-static >&2)
mkdir -p "$work/kernel" "$work/bb"
dpkg -x "$work"/linux-image-*.deb "$work/kernel"
dpkg -x "$work"/busybox-static_*.deb "$work/bb"
bb="$work/bb/bin/busybox"
kdir="$(ls -d "$work"/kernel/lib/modules/*)"

root="$work/root"
mkdir -p "$root"/{bin,dev,proc,sys,tmp,etc,lib/modules,www/cgi-bin}
cp "$bb" "$root/bin/busybox"
for applet in $("$bb" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
# Load order from the modules' depends= (virtio-net and virtio-blk are modules in the cloud kernel; fw_cfg gives the VM
# its name).
modules="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net virtio_blk qemu_fw_cfg"
for m in $modules; do
  f="$(find "$kdir" -name "$m.ko" -o -name "$m.ko.xz" | head -n 1)"
  [ -n "$f" ] || { log "module $m not found in $kpkg"; exit 1; }
  case "$f" in *.xz) xz -dc "$f" > "$root/lib/modules/$m.ko" ;; *) cp "$f" "$root/lib/modules/$m.ko" ;; esac
done

cat > "$root/init" <<INIT
#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $modules; do insmod /lib/modules/\$m.ko || echo "init: insmod \$m failed"; done
addr=\$(sed -n 's/.*colo_ip=\([^ ]*\).*/\1/p' /proc/cmdline)
ip link set lo up
ip addr add "\$addr" dev eth0
ip link set eth0 up
head -c 4194304 /www/payload.bin > /www/4m.bin
echo "colochardev guest" > /www/index.html
httpd -p 80 -h /www
nc -ll -p 7 -e /bin/cat &
# One TCP connection now, before COLO starts: Linux draws its per-boot TCP secrets (ISN and timestamp offsets) at
# the first connection. Drawn after the pair forked, the two VMs would stamp new connections with different
# timestamp offsets until the next checkpoint, and a failover could then meet the client's PAWS check.
wget -q -O /dev/null http://127.0.0.1/index.html
echo "COLO-GUEST-READY \$(cat /sys/firmware/qemu_fw_cfg/by_name/opt/colochardev/vm/raw 2>/dev/null) \$addr"
while true; do sleep 3600; done
INIT
chmod +x "$root/init"

cat > "$root/www/cgi-bin/vm" <<'CGI'
#!/bin/sh
# The guest learns the entry's size once, at boot (so in the primary): names are padded to one length by the
# launcher, and the padding is trimmed here.
name=$(cat /sys/firmware/qemu_fw_cfg/by_name/opt/colochardev/vm/raw 2>/dev/null || echo unnamed)
set -- $name
name=${1:-unnamed}
printf 'Content-Type: text/plain\r\n\r\n%s %s\n' "$name" "$(head -c 16 /dev/urandom | hexdump -ve '1/1 "%02x"')"
CGI
chmod +x "$root/www/cgi-bin/vm"

cat > "$root/www/cgi-bin/disk" <<'CGI'
#!/bin/sh
# SLOT=TEXT writes, SLOT reads (after dropping the page cache, so the answer comes from the disk, not from memory).
printf 'Content-Type: text/plain\r\n\r\n'
[ -b /dev/vda ] || { echo "no disk"; exit 0; }
slot=${QUERY_STRING%%=*}
case "$slot" in ''|*[!0-9]*) echo "bad slot"; exit 0 ;; esac
case "$QUERY_STRING" in
  *=*)
    text=${QUERY_STRING#*=}
    case "$text" in ''|*[!A-Za-z0-9]*) echo "bad text"; exit 0 ;; esac
    printf '%s\n' "$text" | dd of=/dev/vda bs=512 seek="$slot" count=1 conv=sync,notrunc,fsync 2>/dev/null
    ;;
esac
echo 3 > /proc/sys/vm/drop_caches
printf 'disk %s %s\n' "$slot" "$(dd if=/dev/vda bs=512 skip="$slot" count=1 2>/dev/null | tr -d '\000' | head -n 1)"
CGI
chmod +x "$root/www/cgi-bin/disk"

head -c 16777216 /dev/urandom > "$work/payload.bin"
mkdir -p "$work/data/www"
cp "$work/payload.bin" "$work/data/www/payload.bin"

(cd "$root" && find . | "$bb" cpio -o -H newc 2>/dev/null | gzip -9) > "$work/initramfs.img"
# The kernel looks for the next archive's magic only at a 4-byte boundary, skipping zero bytes: pad to 512.
size=$(stat -c %s "$work/initramfs.img")
head -c $(( (512 - size % 512) % 512 )) /dev/zero >> "$work/initramfs.img"
(cd "$work/data" && find . | "$bb" cpio -o -H newc 2>/dev/null) >> "$work/initramfs.img"

cp "$kdir/../../../boot/vmlinuz-"* "$out/vmlinuz.new" 2>/dev/null || cp "$work"/kernel/boot/vmlinuz-* "$out/vmlinuz.new"
mv "$out/vmlinuz.new" "$out/vmlinuz"
mv "$work/initramfs.img" "$out/initramfs.img"
mv "$work/payload.bin" "$out/payload.bin"
cp "$bb" "$out/busybox.new" && mv "$out/busybox.new" "$out/busybox"
echo "$stamp" > "$out/stamp"
log "guest ready in $out ($(du -sh "$out" | cut -f1))"
echo "$out"
