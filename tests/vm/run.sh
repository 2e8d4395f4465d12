#!/usr/bin/env bash
# The VM boot tests (issue 7): strata installs a real Debian usr tree to a disk image, QEMU boots
# it under OVMF + systemd-boot, and a marker unit in the guest reports what it booted on the
# serial console. Between boots strata changes the image's pool and ESP from the host.
#   [VM_SCENARIOS=a|ab|abc|abcd|abcde|abcdef|abcdefg] tests/vm/run.sh ARTIFACTS_DIR
# Scenarios (all by default): (a) install v1 and boot it; (b) v2 as an incremental stream into the
# image's pool, deployed from the host -> boots v2, same root and machine-id, /var kept; (c)
# rollback from the host -> boots v1 again; (d) a second root instance on the same pool, deployed
# from the host -> boots by its own entry: its own root, a new machine-id, its own /var; (e) a
# broken v3 (its health check fails boot-complete.target) deployed with one try -> boots v3 once,
# then systemd-boot falls back to v2, and strata status inside the guest reports v3 bad; (f)
# factory reset (level state) from the host -> /etc from the factory, a new machine-id, /var
# fresh; (g) strata update inside the guest from a file:// repository (signed) in its /var -> the
# next boot runs v4.
# Serial logs stay in ARTIFACTS_DIR/<scenario>.log, the output of strata in the guest in
# ARTIFACTS_DIR/*-in-guest-*.txt.
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

config=/dev/null # what strata runs with on the host; scenario e sets boot.tries = 1
strata() { "$STRATA" --config "$config" -q "$@"; }
# The vendor's pool: both versions, v2 built on v1 (so it is a delta of it).
strata pool init --image "$work/vendor.img" --size 4G --pool "$work/vendor"
mounts+=("$work/vendor")
strata --pool "$work/vendor" import "$(usr 1)" --from-dir "$trees/v1"
strata --pool "$work/vendor" import "$(usr 2)" --from-dir "$trees/v2" --base "$(usr 1)"

disk=$work/disk.img
vars=$work/vars.fd
strata --pool "$work/vendor" install --target "$disk" --size 6G --esp-size 512M --usr "$(usr 1)" --root vm \
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

# boot NAME: one boot; prints the guest's marker line (and keeps the serial log). The emulator
# can hang a guest that did nothing wrong (TCG with two vCPUs did, now and then: qemu-boot.sh).
# A guest that hangs (the timeout) or gets stuck (a panic, an emergency shell) after its marker
# line only failed to power off: its marker counts. One that hangs before it is booted once
# more, its log kept as NAME.hung.log and its end printed; a second hang fails. A hang that
# consumed a boot try shows in the next boot's marker (entry, boots) and fails its expectations.
tail_of() { tr -d '\r' <"$1" | sed 's/\x1b\[[0-9;=]*[A-Za-z]//g' | grep -av '^\s*$' | tail -40 | sed 's/^/  | /' >&2; }
boot() {
    local log=$artifacts/$1.log rc=0
    note "booting ($1), serial log $log"
    bash "$here/qemu-boot.sh" "$disk" "$vars" "$log" "${VM_BOOT_TIMEOUT:-420}" || rc=$?
    if { [ "$rc" = 124 ] || [ "$rc" = 125 ]; } && grep -aq 'STRATA-MARKER ' "$log"; then
        note "$1: the guest hung after its marker line (exit $rc): it did not power off"
        rc=0
    elif [ "$rc" = 124 ] || [ "$rc" = 125 ]; then
        mv "$log" "$artifacts/$1.hung.log"
        note "$1: the guest hung (exit $rc); the last lines of $artifacts/$1.hung.log:"
        tail_of "$artifacts/$1.hung.log"
        note "booting ($1) once more"
        rc=0
        bash "$here/qemu-boot.sh" "$disk" "$vars" "$log" "${VM_BOOT_TIMEOUT:-420}" || rc=$?
    fi
    if [ "$rc" != 0 ]; then
        # CI keeps only this test's output, not the artifacts: the log's end says where it stopped.
        note "the last lines of $log:"
        tail_of "$log"
        die "$1: QEMU failed or timed out (see $log)"
    fi
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
expect "$a" etc_factory yes a; expect "$a" boots 1 a; expect "$a" health ok a; expect "$a" efivarfs yes a
machine_id=$(field "$a" machine_id)
[ "$machine_id" != none ] || die "a: no machine-id was created on first boot"
note "a ok: $a"
scenarios=${VM_SCENARIOS:-abcdefg}
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
# systemd-bless-boot marked the good boot of v2: its entry lost the counter.
[ -e "$work/esp/loader/entries/$vendor+vm+2+x86_64.conf" ] ||
    die "b: v2's entry was not blessed after a good boot: $(ls "$work/esp/loader/entries")"
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
[[ $scenarios == *e* ]] || { echo "vm: all scenarios passed (a b c d)"; exit 0; }

# Where the guest side of a scenario lives: strata's binary (its libraries are in the usr trees)
# and the action the marker unit runs, in the root instance's /var/lib/strata-test.
guest_dir() { echo "$work/pool/$root/var/lib/strata-test"; }
guest_action() { # COMMANDS: the action's body; strata runs on the pool's top level and the ESP
    local dir
    dir=$(guest_dir)
    mkdir -p "$dir"
    install -m 0755 "$STRATA" "$dir/strata"
    cat >"$dir/action" <<EOF_ACTION
#!/bin/sh
set -e
dev=\$(awk '\$2 == "/" { print \$1 }' /proc/mounts)
mkdir -p /run/strata-test-pool
mountpoint -q /run/strata-test-pool || mount -o subvolid=5 "\$dev" /run/strata-test-pool
ls /efi >/dev/null # the ESP is an automount: mount it
strata() { /var/lib/strata-test/strata --pool /run/strata-test-pool "\$@"; }
$1
EOF_ACTION
    chmod 0755 "$dir/action"
}
# The output of the guest's last action, read from its /var (the serial log has it too, but
# possibly interleaved with console messages) into ARTIFACTS_DIR/NAME.txt; fails unless it exited 0.
action_result() { # NAME
    offline
    cp "$(guest_dir)/action.out" "$artifacts/$1.txt" || die "$1: the guest kept no action output"
    local rc
    rc=$(cat "$(guest_dir)/action.exit")
    offline_done
    [ "$rc" = 0 ] || die "$1: the guest's action failed with exit $rc (see $artifacts/$1.txt)"
}
# The object of deployment ID in status --json output (flattened: no spaces or line breaks).
deployment_of() { tr -d ' \n' | grep -o "{[^{}]*\"id\":\"$1\"[^{}]*}"; }

# (e) boot counting: a broken v3 (its health check fails, so boot-complete.target is never
# reached and systemd-bless-boot never blesses it), deployed with one try. It boots once; the
# next boot falls back to the newest entry of the root that still has tries: v2.
tree3=$work/v3
cp -a "$trees/v2" "$tree3"
echo 3 >"$tree3/lib/strata-test/version"
touch "$tree3/lib/strata-test/broken"
strata --pool "$work/vendor" import "$(usr 3)" --from-dir "$tree3" --base "$(usr 2)"
rm -rf "$tree3"
printf '[boot]\ntries = 1\n' >"$work/tries1.toml"
offline
strata --pool "$work/vendor" export "$(usr 3)" --parent "$(usr 2)" | on_image import "$(usr 3)" --from-stream -
config=$work/tries1.toml on_image deploy "$root" >"$artifacts/deploy-v3.txt"
ls "$work/esp/loader/entries" >"$artifacts/entries-after-e-deploy.txt"
grep -qx "$vendor+vm+3+x86_64+1.conf" "$artifacts/entries-after-e-deploy.txt" || die "e: no entry for v3 with one try"
guest_action 'strata status --json'
offline_done
e1=$(boot e1-broken-v3)
expect "$e1" version 3 e; expect "$e1" health failed e; expect "$e1" root "/$root" e
note "e1 ok (v3 booted once, unhealthy): $e1"
e2=$(boot e2-fallback-v2)
expect "$e2" version 2 e; expect "$e2" health ok e; expect "$e2" root "/$root" e; expect "$e2" machine_id "$machine_id" e
action_result status-in-guest-e
status_e=$(cat "$artifacts/status-in-guest-e.txt")
v3=$(deployment_of "$vendor+vm+3+x86_64" <<<"$status_e") || die "e: the guest's strata status does not list v3"
grep -q '"boot_state":"bad"' <<<"$v3" || die "e: the guest's strata status does not report v3 bad: $v3"
v2=$(deployment_of "$vendor+vm+2+x86_64" <<<"$status_e") || die "e: the guest's strata status does not list v2"
grep -q '"booted":true' <<<"$v2" || die "e: the guest's strata status does not report v2 booted: $v2"
tr -d ' \n' <<<"$status_e" | grep -q "\"next_boot\":\"$vendor+vm+2+x86_64\"" || die "e: next boot is not v2: $status_e"
note "e ok: fell back to v2; strata status in the guest: v3 bad, v2 booted"
[[ $scenarios == *f* ]] || { echo "vm: all scenarios passed (a b c d e)"; exit 0; }

# (f) factory reset of the state from the host: /etc comes back from the factory of the usr, the
# machine-id is new and /var starts over (boot counter 1); the loader still falls back to v2.
offline
# v3 used its one try and was never blessed.
[ -e "$work/esp/loader/entries/$vendor+vm+3+x86_64+0-1.conf" ] ||
    die "e: v3's entry is not '+0-1' after its failed try: $(ls "$work/esp/loader/entries")"
on_image factory-reset "$root" --level state --yes >"$artifacts/factory-reset.txt"
[ ! -e "$(guest_dir)" ] || die "f: /var/lib/strata-test survived the reset"
offline_done
f=$(boot f-factory-reset)
expect "$f" version 2 f; expect "$f" root "/$root" f; expect "$f" boots 1 f; expect "$f" etc_factory yes f
[ "$(field "$f" machine_id)" != "$machine_id" ] && [ "$(field "$f" machine_id)" != none ] ||
    die "f: no new machine-id after the reset ($f)"
note "f ok: $f"
[[ $scenarios == *g* ]] || { echo "vm: all scenarios passed (a b c d e f)"; exit 0; }

# (g) an update inside the guest: the vendor publishes v4 (v2 with a new version, a delta from v2)
# into a signed repository; the host puts it and the vendor's public key into the guest's /var;
# strata update in the guest fetches the delta, verifies, receives and deploys; the next boot
# runs v4.
tree4=$work/v4
cp -a "$trees/v2" "$tree4"
echo 4 >"$tree4/lib/strata-test/version"
strata --pool "$work/vendor" import "$(usr 4)" --from-dir "$tree4" --base "$(usr 2)"
rm -rf "$tree4"
strata keygen -o "$work/vendor-key" >/dev/null
strata --pool "$work/vendor" publish "$work/repo" "$(usr 4)" --parent "$(usr 2)" \
    --key "$work/vendor-key.key" >"$artifacts/publish-v4.txt"
offline
mkdir -p "$(guest_dir)"
cp -r "$work/repo" "$(guest_dir)/repo"
rm -f "$(guest_dir)"/repo/payloads/*.full.zst # the guest has v2: the delta is what it must choose
cp "$work/vendor-key.pub" "$(guest_dir)/vendor.pub"
guest_action 'strata remote add vendor file:///var/lib/strata-test/repo --key /var/lib/strata-test/vendor.pub
strata update
strata status --json'
offline_done
g1=$(boot g1-update-in-guest)
expect "$g1" version 2 g
action_result update-in-guest-g
v4=$(deployment_of "$vendor+vm+4+x86_64" <"$artifacts/update-in-guest-g.txt") || die "g: the guest did not deploy v4"
grep -q '"default":true' <<<"$v4" || die "g: v4 is not the default after the update: $v4"
g2=$(boot g2-v4)
expect "$g2" version 4 g; expect "$g2" health ok g; expect "$g2" root "/$root" g; expect "$g2" usr "/$(usr 4)" g
expect "$g2" machine_id "$(field "$f" machine_id)" g; expect "$g2" boots 3 g
note "g ok: $g2"
echo "vm: all scenarios passed (a b c d e f g)"
