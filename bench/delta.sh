#!/usr/bin/env bash
# Measures strata's delta payload against `ostree static-delta` on real Debian trees: payload
# size, publishing time, and applying (`strata update` from a file:// repository against raw
# `btrfs receive` of the equivalent plain stream), for two updates as the issue names them:
#   v1 -> v2  the security updates bookworm-security has over the point release, and vim, curl
#             and git installed by apt (new packages and changed files);
#   v2 -> v3  a kernel update: OLD_KERNEL's image and modules replaced by NEW_KERNEL's.
# One line per measurement:
#   name  strata  peer  ratio  goal  ok|MISSED|info
# The trees are the /usr of a Debian bookworm minbase + systemd + OLD_KERNEL (v1), built with
# debootstrap from MIRROR and cached in CACHE_DIR (keyed by the build recipe), so only the first
# run needs the network (~5 minutes). Each kernel's vmlinuz and initrd (Debian puts them in
# /boot) go to usr/lib/modules/<kver>/, where strata looks for them.
# Run as root. Settings (environment):
#   STRATA     strata binary         (default: <repo>/build/src/cli/strata)
#   MIRROR     Debian mirror         (default: http://deb.debian.org/debian)
#   SECURITY   Debian security mirror (default: http://deb.debian.org/debian-security)
#   OLD_KERNEL, NEW_KERNEL  ABI names of two bookworm kernels the mirror serves
#              (default: 6.1.0-47 and 6.1.0-50)
#   CACHE_DIR  tree cache            (default: /var/tmp/strata-bench-delta-cache)
#   WORKDIR    parent of the scratch dir (default: /var/tmp; needs ~16 GiB free, sparse)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STRATA=$(readlink -f "${STRATA:-$repo/build/src/cli/strata}")
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=${SECURITY:-http://deb.debian.org/debian-security}
OLD_KERNEL=${OLD_KERNEL:-6.1.0-47}
NEW_KERNEL=${NEW_KERNEL:-6.1.0-50}
CACHE_DIR=${CACHE_DIR:-/var/tmp/strata-bench-delta-cache}
vendor=org.bench.Debian
arch=x86_64

source "$repo/bench/scratch.sh"
require_tools btrfs mkfs.btrfs losetup zstd debootstrap ostree unshare

# --- the trees, cached by recipe ---------------------------------------------------------------
recipe="bookworm minbase+systemd,systemd-sysv,udev,kmod,initramfs-tools,$OLD_KERNEL | +security,vim,curl,git | $NEW_KERNEL-$OLD_KERNEL | $MIRROR $SECURITY | 2"
key=$(printf '%s' "$recipe" | sha256sum | cut -c1-16)
trees=$CACHE_DIR/$key
in_chroot() { # DIR CMD: with /proc in a private mount namespace, gone when the command ends
    unshare --mount --fork chroot "$1" sh -c "mount -t proc proc /proc && DEBIAN_FRONTEND=noninteractive $2" >&2
}
apt_install="apt-get -q install -y --no-install-recommends"
if [ ! -e "$trees/done" ]; then
    note "building the Debian trees in $trees (network)"
    rm -rf "$trees.tmp"
    mkdir -p "$trees.tmp"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,udev,kmod,initramfs-tools bookworm "$trees.tmp/v1" "$MIRROR" >&2
    in_chroot "$trees.tmp/v1" "$apt_install linux-image-$OLD_KERNEL-amd64"
    cp -a "$trees.tmp/v1" "$trees.tmp/v2"
    echo "deb $SECURITY bookworm-security main" >"$trees.tmp/v2/etc/apt/sources.list.d/security.list"
    in_chroot "$trees.tmp/v2" "apt-get -q update && apt-get -q upgrade -y && $apt_install vim curl git"
    cp -a "$trees.tmp/v2" "$trees.tmp/v3"
    in_chroot "$trees.tmp/v3" "$apt_install linux-image-$NEW_KERNEL-amd64 && apt-get -q purge -y linux-image-$OLD_KERNEL-amd64"
    for v in v1 v2 v3; do
        rm -rf "$trees.tmp/$v/var/lib/apt/lists/"* "$trees.tmp/$v/var/cache/apt/"*.bin "$trees.tmp/$v/var/cache/apt/archives/"*.deb
        for kernel in "$trees.tmp/$v/boot/vmlinuz-"*; do
            kver=${kernel##*/vmlinuz-}
            mv "$kernel" "$trees.tmp/$v/usr/lib/modules/$kver/vmlinuz"
            mv "$trees.tmp/$v/boot/initrd.img-$kver" "$trees.tmp/$v/usr/lib/modules/$kver/initrd.img"
        done
    done
    touch "$trees.tmp/done"
    rm -rf "$trees"
    mv "$trees.tmp" "$trees"
fi
note "trees: $(for v in v1 v2 v3; do du -sh "$trees/$v/usr" | cut -f1; done | paste -sd' ') ($trees)"

# --- scratch pools ---------------------------------------------------------------------------
scratch_init strata-bench-delta
for p in vendor client raw; do make_pool "$work/$p" $((6 << 30)); done
config=$work/strata.toml
printf '[boot]\ntries = 3\n' >"$config"
strata() { "$STRATA" --config "$config" -q "$@"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { print b - a }'; }
cold() { sync; echo 3 >/proc/sys/vm/drop_caches; }
mb() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1e6 }'; }
rows=()
report() { # name strata peer goal-ratio|-: one row of the table printed at the end
    local ratio ok
    ratio=$(awk -v a="$2" -v b="$3" 'BEGIN { printf "%.3f", a / b }')
    if [ "$4" = - ]; then ok=info; else ok=$(awk -v r="$ratio" -v g="$4" 'BEGIN { print (r <= g) ? "ok" : "MISSED" }'); fi
    rows+=("$(printf '%-22s %10s %10s %7s %8s  %s' "$1" "$2" "$3" "$ratio" "<=${4}x" "$ok")")
}

usr() { echo "usr:$vendor:$arch:$1"; }
strata --pool "$work/vendor" import "$(usr 1)" --from-dir "$trees/v1/usr" --no-base
strata --pool "$work/vendor" import "$(usr 2)" --from-dir "$trees/v2/usr" --base "$(usr 1)"
strata --pool "$work/vendor" import "$(usr 3)" --from-dir "$trees/v3/usr" --base "$(usr 2)"
strata keygen -o "$work/key"
repo_dir=$work/repo
strata --pool "$work/vendor" publish "$repo_dir" "$(usr 1)" --key "$work/key.key"
ostree_repo=$work/ostree
ostree init --repo="$ostree_repo" --mode=bare
commits=()
for v in 1 2 3; do commits[v]=$(ostree commit --repo="$ostree_repo" -b bench --tree=dir="$trees/v$v/usr" -s "v$v"); done

# The client and the raw receiver start from v1, as published.
boot=$work/boot
mkdir -p "$boot"
strata remote add bench "file://$repo_dir" --key "$work/key.pub"
strata --pool "$work/client" root create web --vendor "$vendor" --arch "$arch"
strata --pool "$work/client" import "$(usr 1)" --from-stream "$repo_dir/payloads/$(usr 1 | tr : _).full.zst"
strata --pool "$work/client" --boot-dir "$boot" deploy "root:web:$vendor:$arch" >/dev/null
btrfs send -q "$work/vendor/$(usr 1)" | btrfs receive -q "$work/raw" >/dev/null

field() { # VERSION KIND FIELD: of the payload of usr VERSION from the version before it
    python3 - "$repo_dir/index.json" "$(usr "$1")" "$2" "$3" <<'PY'
import json, sys
index, name, kind, field = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], sys.argv[4]
for t in index["trees"]:
    if t["name"] == name:
        for p in t["payloads"]:
            if p["kind"] == kind and p["parent"]:
                print(p[field])
PY
}

measure() { # FROM TO PAYLOAD-GOAL: publish TO with a delta from FROM, apply it on the client
    local from=$1 to=$2 pair=v$1v$2 t0
    btrfs send -q -p "$work/vendor/$(usr "$from")" "$work/vendor/$(usr "$to")" | zstd -q -19 --long=25 -T0 >"$work/plain.zst"
    local plain_bytes
    plain_bytes=$(stat -c %s "$work/plain.zst")
    cold
    t0=$(now)
    strata --pool "$work/vendor" publish "$repo_dir" "$(usr "$to")" --deltas-from 1 --key "$work/key.key"
    local publish_s sdelta_bytes send_delta_file
    publish_s=$(since "$t0")
    sdelta_bytes=$(field "$to" strata-delta compressed_size)
    send_delta_file=$(field "$to" btrfs-send file)

    cold
    t0=$(now)
    ostree static-delta generate --repo="$ostree_repo" --from="${commits[from]}" --to="${commits[to]}" --inline \
        --filename="$work/ostree-$pair.delta" >/dev/null
    local ostree_s ostree_bytes
    ostree_s=$(since "$t0")
    ostree_bytes=$(stat -c %s "$work/ostree-$pair.delta")

    # The download is not part of applying: fetched first, the timed update finds it verified.
    strata --pool "$work/client" --boot-dir "$boot" update --download-only >/dev/null
    cold
    t0=$(now)
    /usr/bin/time -f %M -o "$work/rss" "$STRATA" --config "$config" -q --pool "$work/client" --boot-dir "$boot" update --json >"$work/update.json"
    sync
    local update_s receive_s
    update_s=$(since "$t0")
    grep -q '"kind": "delta"' "$work/update.json" || die "strata update did not use the delta: $(cat "$work/update.json")"
    cold
    t0=$(now)
    zstd -dc "$repo_dir/$send_delta_file" | btrfs receive -q "$work/raw" >/dev/null
    sync
    receive_s=$(since "$t0")
    cmp <(cd "$work/client/$(usr "$to")" && find . -printf '%p %s %m\n' | sort) \
        <(cd "$work/vendor/$(usr "$to")" && find . -printf '%p %s %m\n' | sort) >/dev/null ||
        die "the updated tree differs from the published one"

    report "payload-${pair}_MB" "$(mb "$sdelta_bytes")" "$(mb "$ostree_bytes")" "$3"
    report "send-p-zstd19-${pair}_MB" "$(mb "$plain_bytes")" "$(mb "$ostree_bytes")" -
    report "publish-${pair}_s" "$(printf '%.2f' "$publish_s")" "$(printf '%.2f' "$ostree_s")" 0.33
    report "apply-${pair}_s" "$(printf '%.2f' "$update_s")" "$(printf '%.2f' "$receive_s")" 1.5
    rows+=("$(printf '%-22s %10s %10s %7s %8s  %s' "update-rss-${pair}_MiB" "$(awk -v k="$(cat "$work/rss")" 'BEGIN { printf "%.0f", k / 1024 }')" - - "<256" \
        "$(awk -v k="$(cat "$work/rss")" 'BEGIN { print (k / 1024 < 256) ? "ok" : "MISSED" }')")")
}
measure 1 2 0.9
measure 2 3 1.0

printf '%-22s %10s %10s %7s %8s  %s\n' name strata peer ratio goal result
printf '%s\n' "${rows[@]}"
note "publish_s is the whole publish (full stream, plain delta and strata delta); the peer is one static-delta generate"
