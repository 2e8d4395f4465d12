#!/usr/bin/env bash
# The VM boot tests (issue 7): strata installs a real Debian usr tree to a disk image, QEMU boots
# it under OVMF + systemd-boot, and a marker unit in the guest reports what it booted on the
# serial console. Between boots strata changes the image's pool and ESP from the host.
#   [VM_SCENARIOS=a|ab|abc|abcd] tests/vm/run.sh ARTIFACTS_DIR
# Scenarios (all by default): (a) install v1 and boot it; (b) v2 as an incremental stream into the
# image's pool, deployed from the host -> boots v2, same root and machine-id, /var kept; (c)
# rollback from the host -> boots v1 again; (d) a second root instance on the same pool, deployed
# from the host -> boots by its own entry: its own root, a new machine-id, its own /var.
# Serial logs stay in ARTIFACTS_DIR/<scenario>.log.
# Needs root, network for the first tree build (cached in $STRATA_VM_CACHE, keyed by the
# builder's hash), qemu-system-x86, ovmf, mtools, dosfstools, gdisk, debootstrap.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
artifacts=$(mkdir -p "$1" && cd "$1" && pwd)
STRATA=$(readlink -f "${STRATA:-$repo/build/src/cli/strata}")
cache=${STRATA_VM_CACHE:-/var/tmp/strata-vm-cache}
export MTOOLS_SKIP_CHECK=1
vendor=org.strata.Test
root=root:vm:$vendor:x86_64
usr() { echo "usr:$vendor:x86_64:$1"; }

die() { echo "vm: FAIL: $*" >&2; exit 1; }
note() { echo "vm: $*" >&2; }
[ "$(id -u)" = 0 ] || die "must run as root"
[ -x "$STRATA" ] || die "no strata binary at $STRATA"

work=$(mktemp -d /var/tmp/strata-vm.XXXXXX)
mounts=() loops=()
cleanup() {
    set +e
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount "${mounts[i]}"; done
    for l in "${loops[@]}"; do
        dev=${l%% *} img=${l#* }
        [ "$(cat "/sys/block/${dev##*/}/loop/backing_file" 2>/dev/null)" = "$img" ] && losetup -d "$dev"
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

note "building or reusing the Debian trees in $cache"
trees=$(STRATA=$STRATA bash "$here/build-tree.sh" "$cache" | tail -1)
[ -d "$trees/v1" ] && [ -d "$trees/v2" ] || die "tree builder gave no trees"

strata() { "$STRATA" --config /dev/null -q "$@"; }
# The vendor's pool: both versions, v2 built on v1 (so it is a delta of it).
strata pool init --image "$work/vendor.img" --size 4G --pool "$work/vendor"
mounts+=("$work/vendor")
strata --pool "$work/vendor" import "$(usr 1)" --from-dir "$trees/v1"
strata --pool "$work/vendor" import "$(usr 2)" --from-dir "$trees/v2" --base "$(usr 1)"

disk=$work/disk.img
vars=$work/vars.fd
strata --pool "$work/vendor" install --target "$disk" --size 6G --esp-size 256M --usr "$(usr 1)" --root vm \
    --kernel-arg console=ttyS0 --kernel-arg systemd.firstboot=off >"$artifacts/install.txt"
esp_offset=1048576
pool_start=$(sgdisk -i 2 "$disk" | awk '/^First sector:/ { print $3 }')
pool_end=$(sgdisk -i 2 "$disk" | awk '/^Last sector:/ { print $3 }')

# The image's pool mounted, and its ESP as a directory ($work/esp), for strata to work on;
# offline_done copies the ESP back (mtools: this kernel cannot mount vfat) and unmounts.
offline() {
    local dev
    dev=$(losetup -f --show -o $((pool_start * 512)) --sizelimit $(((pool_end - pool_start + 1) * 512)) "$disk")
    loops+=("$dev $disk")
    mkdir -p "$work/pool" "$work/esp"
    mount "$dev" "$work/pool"
    mounts+=("$work/pool")
    rm -rf "$work/esp" && mkdir "$work/esp"
    for d in loader "$vendor"; do mcopy -s -p -n -i "$disk@@$esp_offset" "::/$d" "$work/esp/"; done
}
offline_done() {
    for d in loader "$vendor"; do mdeltree -i "$disk@@$esp_offset" "::/$d"; done
    for d in loader "$vendor"; do mcopy -s -p -Q -i "$disk@@$esp_offset" "$work/esp/$d" "::/"; done
    umount "$work/pool"
    unset 'mounts[${#mounts[@]}-1]'
    losetup -d "${loops[-1]%% *}"
    unset 'loops[${#loops[@]}-1]'
}
on_image() { strata --pool "$work/pool" --boot-dir "$work/esp" "$@"; }

# boot NAME: one boot; prints the guest's marker line (and keeps the serial log).
boot() {
    local log=$artifacts/$1.log
    note "booting ($1), serial log $log"
    bash "$here/qemu-boot.sh" "$disk" "$vars" "$log" "${VM_BOOT_TIMEOUT:-420}" || die "$1: QEMU failed or timed out (see $log)"
    local line
    # Anywhere in a line: the serial getty's "login: " prompt may come first on the same line.
    line=$(tr -d '\r' <"$log" | grep -a -o 'STRATA-MARKER .*' | tail -1) || die "$1: no marker line (see $log)"
    echo "$line"
}
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"; }
expect() { # LINE KEY VALUE SCENARIO
    local got
    got=$(field "$1" "$2")
    [ "$got" = "$3" ] || die "$4: $2 is '$got', expected '$3' (marker: $1)"
}

# (a) the installed v1 boots: its usr read-only, the root instance as /, /etc from the factory.
a=$(boot a-install-v1)
expect "$a" version 1 a; expect "$a" usr "/$(usr 1)" a; expect "$a" usr_ro ro a; expect "$a" root "/$root" a
expect "$a" etc_factory yes a; expect "$a" boots 1 a; expect "$a" health ok a
machine_id=$(field "$a" machine_id)
[ "$machine_id" != none ] || die "a: no machine-id was created on first boot"
note "a ok: $a"
scenarios=${VM_SCENARIOS:-abcd}
[[ $scenarios == *b* ]] || { echo "vm: all scenarios passed (a)"; exit 0; }

# (b) v2 deployed from the host: same root, same machine-id, /var kept (boot counter goes on).
offline
strata --pool "$work/vendor" export "$(usr 2)" --parent "$(usr 1)" | on_image import "$(usr 2)" --from-stream -
on_image deploy "$root" >"$artifacts/deploy-v2.txt"
offline_done
b=$(boot b-deploy-v2)
expect "$b" version 2 b; expect "$b" usr "/$(usr 2)" b; expect "$b" usr_ro ro b; expect "$b" root "/$root" b
expect "$b" machine_id "$machine_id" b; expect "$b" boots 2 b
note "b ok: $b"

# (c) rollback from the host: v1 again, with the state as it is now (counter still going).
offline
on_image rollback "$root" >"$artifacts/rollback.txt"
offline_done
c=$(boot c-rollback-v1)
expect "$c" version 1 c; expect "$c" usr "/$(usr 1)" c; expect "$c" machine_id "$machine_id" c; expect "$c" boots 3 c
note "c ok: $c"
[[ $scenarios == *d* ]] || { echo "vm: all scenarios passed (a b c)"; exit 0; }

# (d) a second instance of the OS on the same pool: its own entry (the default now), its own
# root subvolume, state and machine-id; the first instance's entries stay.
root2=root:vm2:$vendor:x86_64
offline
on_image root create vm2 --vendor "$vendor" --arch x86_64
on_image deploy "$root2" --kernel-arg console=ttyS0 --kernel-arg systemd.firstboot=off >"$artifacts/deploy-vm2.txt"
ls "$work/esp/loader/entries" >"$artifacts/entries-after-d.txt"
grep -q "^$vendor+vm+1+x86_64" "$artifacts/entries-after-d.txt" || die "d: the first instance's entry is gone"
offline_done
d=$(boot d-second-instance)
expect "$d" version 2 d; expect "$d" usr "/$(usr 2)" d; expect "$d" root "/$root2" d; expect "$d" boots 1 d
expect "$d" etc_factory yes d
[ "$(field "$d" machine_id)" != "$machine_id" ] && [ "$(field "$d" machine_id)" != none ] ||
    die "d: the second instance has no machine-id of its own ($d)"
note "d ok: $d"
echo "vm: all scenarios passed (a b c d)"
