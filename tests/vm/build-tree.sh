#!/bin/bash
# Build two bootable Debian 12 (bookworm, amd64) usr trees for the VM boot tests and cache them.
#
# Usage: tests/vm/build-tree.sh CACHE_DIR
#
# Output: CACHE_DIR/<key>/v1 and CACHE_DIR/<key>/v2, each the CONTENT of a guest's /usr (merged
# usr: bin/, lib/, share/, ... directly inside), made stateless with 'strata factory prepare':
#   lib/modules/<kver>/vmlinuz, lib/modules/<kver>/initrd  (systemd + btrfs dracut initrd)
#   lib/strata-test/version                                (1 or 2; v2 also has /usr/bin/less)
#   lib/systemd/system/strata-test-{marker,health}.service, enabled from /usr
#   share/factory/{etc,var}                                (the former /etc and /var)
#   strata's shared libraries (Debian packages), so that run.sh can run a strata binary it puts
#   into the root instance inside the guest
# plus CACHE_DIR/<key>/kver (the kernel version) and CACHE_DIR/<key>/done.
# The last line on stdout is CACHE_DIR/<key>; all logs go to stderr.
#
# <key> is the first 16 hex digits of a sha256 over this script and every file under
# tests/vm/guest/ (sorted, with their paths): changing either builds anew. A finished key
# (CACHE_DIR/<key>/done) only prints the path.
#
# Environment: STRATA (default /work/build-rel/src/cli/strata), MIRROR (default: the host's
# apt source for bookworm, else http://deb.debian.org/debian).
#
# Needs root, debootstrap and unshare (util-linux). The chroots get /proc, /sys, /dev and
# /dev/pts in a private mount namespace (unshare --mount): the mounts are never visible on the
# host and disappear with the chroot's process, also when this script is killed.
set -euo pipefail
umask 022
export LC_ALL=C

exec 3>&1 1>&2 # stdout is only for the result path (fd 3); everything else goes to stderr

prog=build-tree
log() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$prog" "$*" >&2
    exit 1
}

[ $# -eq 1 ] && [ -n "$1" ] || {
    echo "usage: $0 CACHE_DIR" >&2
    exit 2
}
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot, mounts)"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
script="$here/$(basename "${BASH_SOURCE[0]}")"
guest="$here/guest"
[ -d "$guest/usr" ] || die "guest files missing: $guest/usr"

mkdir -p -- "$1" || die "cannot create cache directory '$1'"
cache=$(cd -- "$1" && pwd)

# --- cache key and fast path ------------------------------------------------------------------
key=$(
    {
        printf 'build-tree.sh %s\n' "$(sha256sum <"$script" | cut -d' ' -f1)"
        cd "$here" && find guest \( -type f -o -type l \) -print0 | sort -z | xargs -0r sha256sum
    } | sha256sum | cut -c1-16
)
out="$cache/$key"
if [ -e "$out/done" ]; then
    log "cached: $out"
    echo "$out" >&3
    exit 0
fi

# --- helpers ----------------------------------------------------------------------------------
# Mount points at or below DIR in this (the host's) mount namespace.
mounts_under() {
    awk -v p="$1" '{ mp = $5; gsub(/\\040/, " ", mp); if (mp == p || index(mp, p "/") == 1) print mp }' \
        /proc/self/mountinfo
}

# Remove DIR, but never across a mount point (a bind-mounted /dev or /sys must not be emptied).
safe_rm() {
    local dir=$1 m
    [ -e "$dir" ] || return 0
    m=$(mounts_under "$dir")
    if [ -n "$m" ]; then
        log "warning: not removing '$dir': mount points below it: $(echo $m)"
        return 1
    fi
    rm -rf --one-file-system -- "$dir"
}

# Run CMD... chrooted in ROOT with /proc, /sys, /dev, /dev/pts mounted in a private mount
# namespace: nothing is mounted on the host, and the kernel drops the mounts when CMD exits.
in_chroot() {
    local root=$1
    shift
    unshare --mount --propagation private -- /bin/sh -euc '
        r=$1; shift
        mount -t proc proc "$r/proc"
        mount -t sysfs sysfs "$r/sys"
        mount --bind /dev "$r/dev"
        mount --bind /dev/pts "$r/dev/pts"
        exec chroot "$r" /usr/bin/env -i \
            PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 TERM=dumb \
            DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true "$@"
    ' in_chroot "$root" "$@"
}

# INITRD=No: the kernel's postinst.d/dracut hook (also run by dracut's trigger) skips building
# /boot/initrd.img-<kver>, which is not used; the initrd is built once, explicitly, below.
apt_install() { # ROOT PACKAGE...
    local root=$1
    shift
    in_chroot "$root" INITRD=No apt-get install -y --no-install-recommends -o Dpkg::Use-Pty=0 "$@" >&2 ||
        die "apt-get install $* failed in $root"
}

# The host's Debian mirror for bookworm (one-line and deb822 sources), first match.
detect_mirror() {
    local f found=""
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        found=$(awk '$1 == "deb" {
                i = 2
                if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == "bookworm") { print $i; exit }
            }' "$f")
        [ -z "$found" ] || break
    done
    if [ -z "$found" ]; then
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -r "$f" ] || continue
            found=$(awk 'BEGIN { RS = ""; FS = "\n" }
                {
                    uris = ""; suites = ""; types = ""; enabled = "yes"
                    for (i = 1; i <= NF; i++) {
                        if ($i ~ /^URIs:/)    { v = $i; sub(/^URIs:[ \t]*/, "", v); uris = v }
                        if ($i ~ /^Suites:/)  { v = $i; sub(/^Suites:[ \t]*/, "", v); suites = " " v " " }
                        if ($i ~ /^Types:/)   { v = $i; sub(/^Types:[ \t]*/, "", v); types = " " v " " }
                        if ($i ~ /^Enabled:/) { v = $i; sub(/^Enabled:[ \t]*/, "", v); enabled = v }
                    }
                    if (enabled != "no" && types ~ / deb / && suites ~ /[ \t]bookworm[ \t]/) {
                        split(uris, u, /[ \t]+/); print u[1]; exit
                    }
                }' "$f")
            [ -z "$found" ] || break
        done
    fi
    echo "${found:-http://deb.debian.org/debian}"
}

# --- stale builds -----------------------------------------------------------------------------
for d in "$cache"/*.tmp.*; do
    [ -d "$d" ] || continue
    pid=${d##*.tmp.}
    case $pid in '' | *[!0-9]*) continue ;; esac
    if [ "$pid" != $$ ] && kill -0 "$pid" 2>/dev/null && grep -qa build-tree "/proc/$pid/cmdline" 2>/dev/null; then
        log "build in progress by pid $pid: leaving $d"
        continue
    fi
    log "removing stale build $d"
    safe_rm "$d" || log "warning: could not remove stale build $d"
done
if [ -e "$out" ] && [ ! -e "$out/done" ]; then
    log "removing incomplete $out"
    safe_rm "$out" || die "cannot remove incomplete $out"
fi

# --- setup ------------------------------------------------------------------------------------
STRATA=${STRATA:-/work/build-rel/src/cli/strata}
[ -x "$STRATA" ] || die "strata binary not found or not executable: $STRATA (set STRATA=)"
command -v debootstrap >/dev/null || die "debootstrap not installed (apt-get install debootstrap)"
command -v unshare >/dev/null || die "unshare not found (util-linux)"
MIRROR=${MIRROR:-$(detect_mirror)}

tmp="$cache/$key.tmp.$$"
ok=0
cleanup() {
    local rc=$? m
    [ "$ok" = 1 ] && return 0
    if [ -n "${tmp:-}" ] && [ -d "$tmp" ]; then
        # The chroot mounts live in private namespaces and cannot be here; if anything is
        # mounted below our own tmp dir all the same, it is ours: unmount it, deepest first.
        m=$(mounts_under "$tmp" | sort -r)
        if [ -n "$m" ]; then
            log "unmounting leftovers below $tmp"
            while IFS= read -r p; do umount -- "$p" || umount -l -- "$p" || true; done <<<"$m"
        fi
        safe_rm "$tmp" || log "warning: left $tmp behind"
    fi
    log "FAILED (exit $rc) after ${SECONDS}s"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

mkdir -- "$tmp"
log "key $key, building in $tmp (mirror $MIRROR, strata $STRATA)"
SECONDS=0

# --- 1. debootstrap + kernel + dracut ---------------------------------------------------------
root1="$tmp/root1"
log "debootstrap bookworm (minbase) ..."
debootstrap --variant=minbase --arch=amd64 \
    --include=systemd,systemd-sysv,udev,kmod,btrfs-progs \
    bookworm "$root1" "$MIRROR" >&2 || die "debootstrap failed (mirror $MIRROR)"
log "debootstrap done after ${SECONDS}s"

# No service may start inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$root1/usr/sbin/policy-rc.d"
chmod 0755 "$root1/usr/sbin/policy-rc.d"

in_chroot "$root1" apt-get update -o Dpkg::Use-Pty=0 >&2 || die "apt-get update failed in the chroot"
# dracut and initramfs-tools conflict, so dracut cannot go into debootstrap --include; installed
# together with the kernel here, apt satisfies linux-initramfs-tool with dracut.
log "installing dracut, linux-image-amd64, dosfstools ..."
apt_install "$root1" dracut linux-image-amd64 dosfstools
in_chroot "$root1" dpkg -s initramfs-tools >/dev/null 2>&1 && die "initramfs-tools got installed next to dracut"

# Debian ships systemd-bless-boot (and its generator, which pulls it in when the loader counts
# the boot) in the systemd-boot package, not in systemd: without it no boot is ever marked good.
log "installing systemd-boot (for systemd-bless-boot) ..."
apt_install "$root1" systemd-boot
[ -x "$root1/usr/lib/systemd/system-generators/systemd-bless-boot-generator" ] ||
    die "systemd-boot brought no systemd-bless-boot-generator"

# What strata links (libzstd; the rest is linked in) and opens on first use for what the guest
# runs (libcurl for HTTP, libcrypto for SHA-256; libmount and libsystemd come with systemd);
# the linked part is checked below by running it in the chroot.
log "installing strata's libraries ..."
apt_install "$root1" libzstd1 libcurl4 libssl3
cp "$STRATA" "$root1/tmp/strata-check"
in_chroot "$root1" /tmp/strata-check --version >&2 || die "strata does not run in the guest tree (missing libraries?)"
rm -f "$root1/tmp/strata-check"

# --- 2. kernel and initrd in /usr/lib/modules/<kver>/ -----------------------------------------
mapfile -t kvers < <(find "$root1/usr/lib/modules" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort)
[ "${#kvers[@]}" = 1 ] || die "expected exactly one kernel in usr/lib/modules, found: ${kvers[*]:-none}"
kver=${kvers[0]}
[ -f "$root1/boot/vmlinuz-$kver" ] || die "no /boot/vmlinuz-$kver"
log "kernel $kver; building the initrd (dracut, systemd + btrfs) ..."
# Written as initrd beside vmlinuz: one of the names strata's find_kernel accepts
# (src/boot/kernel.cpp: initrd, initrd.img, initramfs.img).
# efivarfs is a module in Debian's kernel: systemd mounts /sys/firmware/efi/efivars while it runs
# in the initrd, and without the module there the system never gets EFI variables — no
# LoaderEntrySelected, no LoaderBootCountPath, so systemd-bless-boot never marks a boot good.
in_chroot "$root1" dracut --no-hostonly --add "systemd btrfs" --add-drivers efivarfs --force \
    "/usr/lib/modules/$kver/initrd" "$kver" >&2 || die "dracut failed"
cp --preserve=timestamps "$root1/boot/vmlinuz-$kver" "$root1/usr/lib/modules/$kver/vmlinuz"
chmod 0644 "$root1/usr/lib/modules/$kver/initrd" "$root1/usr/lib/modules/$kver/vmlinuz"

# Check the initrd: systemd-based and able to mount btrfs.
in_chroot "$root1" lsinitrd "/usr/lib/modules/$kver/initrd" >"$tmp/initrd.list" 2>&1 ||
    die "lsinitrd failed on the new initrd"
grep -q ' usr/lib/systemd/systemd$' "$tmp/initrd.list" || die "initrd has no usr/lib/systemd/systemd"
grep -Eq '/btrfs\.ko(\.[a-z]+)?$' "$tmp/initrd.list" || die "initrd has no btrfs.ko"
grep -Eq '/efivarfs\.ko(\.[a-z]+)?$' "$tmp/initrd.list" || die "initrd has no efivarfs.ko"
rm -f "$tmp/initrd.list"

# Leftovers of the kernel package's initrd handling, if any: strata takes the kernel and
# initrd from /usr/lib/modules/<kver>/.
rm -f "$root1"/boot/initrd.img-* "$root1"/initrd.img "$root1"/initrd.img.old

# --- 3. guest files, enabled from /usr --------------------------------------------------------
log "installing guest files"
(cd "$guest/usr" && find . -type f -print) | while IFS= read -r f; do
    mode=0644
    [ -x "$guest/usr/$f" ] && mode=0755
    install -D -m "$mode" "$guest/usr/$f" "$root1/usr/$f"
done
sys="$root1/usr/lib/systemd/system"
for u in strata-test-marker.service strata-test-health.service; do
    [ -f "$sys/$u" ] || die "guest unit missing: $u"
done
mkdir -p "$sys/multi-user.target.wants" "$sys/boot-complete.target.requires"
ln -sfn ../strata-test-marker.service "$sys/multi-user.target.wants/strata-test-marker.service"
ln -sfn ../strata-test-health.service "$sys/boot-complete.target.requires/strata-test-health.service"
echo 1 >"$root1/usr/lib/strata-test/version"

# --- 5a. v2 = a copy of the same rootfs (before factory prepare) + less -----------------------
root2="$tmp/root2"
log "copying the rootfs for v2"
cp -a --reflink=auto "$root1" "$root2"
log "installing less into v2"
apt_install "$root2" less
echo 2 >"$root2/usr/lib/strata-test/version"

# --- 4. stateless: factory prepare, take usr --------------------------------------------------
finish() { # ROOT N
    local root=$1 n=$2 mods
    in_chroot "$root" apt-get clean >&2
    find "$root/var/lib/apt/lists" -maxdepth 1 -type f -delete
    rm -f "$root/usr/sbin/policy-rc.d"
    # Machine-specific: first boot makes a machine id. (prepare's defaults drop these too.)
    rm -f "$root/etc/machine-id" "$root/var/lib/dbus/machine-id"
    # debootstrap copies the build host's resolv.conf; it means nothing in the guest.
    rm -f "$root/etc/resolv.conf"
    mods=$(find "$root/usr/lib/modules" -mindepth 1 -maxdepth 1 | wc -l)
    [ "$mods" = 1 ] || die "v$n: expected exactly one entry in usr/lib/modules, found $mods"
    log "v$n: strata factory prepare"
    "$STRATA" factory prepare "$root" --exclude etc/hostname >&2 || die "v$n: strata factory prepare failed"
    [ -f "$root/usr/share/factory/etc/passwd" ] || die "v$n: no usr/share/factory/etc/passwd after prepare"
    [ ! -e "$root/usr/share/factory/etc/machine-id" ] || die "v$n: machine-id left in the factory"
    mv -T "$root/usr" "$tmp/v$n"
    safe_rm "$root" || die "cannot remove $root"
}
finish "$root1" 1
finish "$root2" 2

for n in 1 2; do
    v="$tmp/v$n"
    for f in "lib/modules/$kver/vmlinuz" "lib/modules/$kver/initrd" lib/os-release \
        share/factory/etc/passwd lib/strata-test/version lib/strata-test/marker \
        lib/systemd/system/multi-user.target.wants/strata-test-marker.service \
        lib/systemd/system/boot-complete.target.requires/strata-test-health.service; do
        [ -e "$v/$f" ] || die "v$n: missing $f"
    done
    [ "$(cat "$v/lib/strata-test/version")" = "$n" ] || die "v$n: wrong version file"
done
[ -x "$tmp/v2/bin/less" ] || die "v2: no /usr/bin/less"
[ ! -e "$tmp/v1/bin/less" ] || die "v1 has /usr/bin/less"

echo "$kver" >"$tmp/kver"
# done is written before the rename, so CACHE_DIR/<key> appears complete or not at all.
touch "$tmp/done"
if ! mv -T "$tmp" "$out" 2>/dev/null; then
    [ -e "$out/done" ] || die "cannot rename $tmp to $out"
    log "$out was built concurrently; discarding this build"
    safe_rm "$tmp" || true
fi
ok=1
log "built $out (kernel $kver) in ${SECONDS}s"
echo "$out" >&3
