#!/usr/bin/env bash
# Measures strata's delta payload against `ostree static-delta` on real Debian trees: payload
# size, publishing time, and applying (`strata update` from a file:// repository against raw
# `btrfs receive` of the equivalent plain stream). One line per measurement:
#   name  strata  peer  ratio  goal  ok|MISSED|info
# The trees are the /usr of a Debian bookworm minbase + systemd (v1) and of v1 + vim, curl and
# git installed by apt (v2), built with debootstrap from MIRROR and cached in CACHE_DIR (keyed by
# the build recipe), so only the first run needs the network (~3 minutes). Both get the same small
# fake kernel under lib/modules so strata can deploy them.
# Run as root. Settings (environment):
#   STRATA    strata binary         (default: <repo>/build/src/cli/strata)
#   MIRROR    Debian mirror         (default: http://deb.debian.org/debian)
#   CACHE_DIR tree cache            (default: /var/tmp/strata-bench-delta-cache)
#   WORKDIR   parent of the scratch dir (default: /var/tmp; needs ~8 GiB free, sparse)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STRATA=$(readlink -f "${STRATA:-$repo/build/src/cli/strata}")
MIRROR=${MIRROR:-http://deb.debian.org/debian}
CACHE_DIR=${CACHE_DIR:-/var/tmp/strata-bench-delta-cache}
vendor=org.bench.Debian
arch=x86_64

source "$repo/bench/scratch.sh"
require_tools btrfs mkfs.btrfs losetup zstd debootstrap ostree unshare

# --- the trees, cached by recipe ---------------------------------------------------------------
recipe="bookworm minbase+systemd,systemd-sysv,udev,kmod | +vim,curl,git | $MIRROR | 1"
key=$(printf '%s' "$recipe" | sha256sum | cut -c1-16)
trees=$CACHE_DIR/$key
in_chroot() { # DIR CMD: with /proc in a private mount namespace, gone when the command ends
    unshare --mount --fork chroot "$1" sh -c "mount -t proc proc /proc && $2"
}
if [ ! -e "$trees/done" ]; then
    note "building the Debian trees in $trees (network)"
    rm -rf "$trees.tmp"
    mkdir -p "$trees.tmp"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,udev,kmod bookworm "$trees.tmp/v1" "$MIRROR" >&2
    cp -a "$trees.tmp/v1" "$trees.tmp/v2"
    in_chroot "$trees.tmp/v2" "DEBIAN_FRONTEND=noninteractive apt-get -q update && \
        DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends vim curl git" >&2
    for v in v1 v2; do
        rm -rf "$trees.tmp/$v/var/lib/apt/lists/"* "$trees.tmp/$v/var/cache/apt/"*.bin "$trees.tmp/$v/var/cache/apt/archives/"*.deb
        mkdir -p "$trees.tmp/$v/usr/lib/modules/6.1.0-bench"
    done
    head -c $((4 << 20)) /dev/urandom >"$trees.tmp/v1/usr/lib/modules/6.1.0-bench/vmlinuz"
    head -c $((8 << 20)) /dev/urandom >"$trees.tmp/v1/usr/lib/modules/6.1.0-bench/initrd.img"
    cp -a "$trees.tmp/v1/usr/lib/modules/6.1.0-bench/." "$trees.tmp/v2/usr/lib/modules/6.1.0-bench/"
    touch "$trees.tmp/done"
    rm -rf "$trees"
    mv "$trees.tmp" "$trees"
fi
note "trees: $(du -sh "$trees/v1/usr" | cut -f1) and $(du -sh "$trees/v2/usr" | cut -f1) ($trees)"

# --- scratch pools ---------------------------------------------------------------------------
scratch_init strata-bench-delta
for p in vendor client raw; do make_pool "$work/$p" $((3 << 30)); done
config=$work/strata.toml
printf '[boot]\ntries = 3\n' >"$config"
strata() { "$STRATA" --config "$config" -q "$@"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { print b - a }'; }
cold() { sync; echo 3 >/proc/sys/vm/drop_caches; }
mb() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1e6 }'; }
report() { # name strata peer goal-ratio|- ["info"]
    local ratio ok
    ratio=$(awk -v a="$2" -v b="$3" 'BEGIN { printf "%.3f", a / b }')
    if [ "$4" = - ]; then ok=info; else ok=$(awk -v r="$ratio" -v g="$4" 'BEGIN { print (r <= g) ? "ok" : "MISSED" }'); fi
    printf '%-22s %10s %10s %7s %8s  %s\n' "$1" "$2" "$3" "$ratio" "<=${4}x" "$ok"
}

usr1=usr:$vendor:$arch:1 usr2=usr:$vendor:$arch:2
strata --pool "$work/vendor" import "$usr1" --from-dir "$trees/v1/usr" --no-base
strata --pool "$work/vendor" import "$usr2" --from-dir "$trees/v2/usr" --base "$usr1"
strata keygen -o "$work/key"

# --- payload sizes and publishing --------------------------------------------------------------
btrfs send -q -p "$work/vendor/$usr1" "$work/vendor/$usr2" | zstd -q -19 --long=25 -T0 >"$work/plain.zst"
plain_bytes=$(stat -c %s "$work/plain.zst")
repo_dir=$work/repo
strata --pool "$work/vendor" publish "$repo_dir" "$usr1" --key "$work/key.key"
cold
t0=$(now)
strata --pool "$work/vendor" publish "$repo_dir" "$usr2" --deltas-from 1 --key "$work/key.key"
publish_s=$(since "$t0")
field() { # KIND FIELD: of usr2's payload from usr1
    python3 - "$repo_dir/index.json" "$usr2" "$1" "$2" <<'PY'
import json, sys
index, name, kind, field = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], sys.argv[4]
for t in index["trees"]:
    if t["name"] == name:
        for p in t["payloads"]:
            if p["kind"] == kind and p["parent"]:
                print(p[field])
PY
}
sdelta_bytes=$(field strata-delta compressed_size)
send_delta_file=$(field btrfs-send file)

ostree_repo=$work/ostree
ostree init --repo="$ostree_repo" --mode=bare
c1=$(ostree commit --repo="$ostree_repo" -b bench --tree=dir="$trees/v1/usr" -s v1)
c2=$(ostree commit --repo="$ostree_repo" -b bench --tree=dir="$trees/v2/usr" -s v2)
cold
t0=$(now)
ostree static-delta generate --repo="$ostree_repo" --from="$c1" --to="$c2" --inline --filename="$work/ostree.delta" >/dev/null
ostree_s=$(since "$t0")
ostree_bytes=$(stat -c %s "$work/ostree.delta")

# --- applying: strata update (delta) against raw receive of the plain stream --------------------
boot=$work/boot
mkdir -p "$boot"
strata remote add bench "file://$repo_dir" --key "$work/key.pub"
strata --pool "$work/client" root create web --vendor "$vendor" --arch "$arch"
strata --pool "$work/client" import "$usr1" --from-stream "$repo_dir/payloads/${usr1//:/_}.full.zst"
strata --pool "$work/client" --boot-dir "$boot" deploy "root:web:$vendor:$arch" >/dev/null
# The download is not part of applying: fetched first, the timed update finds it verified.
strata --pool "$work/client" --boot-dir "$boot" update --download-only >/dev/null
cold
t0=$(now)
/usr/bin/time -f %M -o "$work/rss" "$STRATA" --config "$config" -q --pool "$work/client" --boot-dir "$boot" update --json >"$work/update.json"
sync
update_s=$(since "$t0")
grep -q '"kind": "delta"' "$work/update.json" || die "strata update did not use the delta: $(cat "$work/update.json")"
btrfs send -q "$work/vendor/$usr1" | btrfs receive -q "$work/raw" >/dev/null
cold
t0=$(now)
zstd -dc "$repo_dir/$send_delta_file" | btrfs receive -q "$work/raw" >/dev/null
sync
receive_s=$(since "$t0")
cmp <(cd "$work/client/$usr2" && find . -printf '%p %s %m\n' | sort) <(cd "$work/vendor/$usr2" && find . -printf '%p %s %m\n' | sort) >/dev/null ||
    die "the updated tree differs from the published one"

printf '%-22s %10s %10s %7s %8s  %s\n' name strata peer ratio goal result
report payload-v1v2_MB "$(mb "$sdelta_bytes")" "$(mb "$ostree_bytes")" 0.9
report send-p-zstd19_MB "$(mb "$plain_bytes")" "$(mb "$ostree_bytes")" -
report publish_s "$(printf '%.2f' "$publish_s")" "$(printf '%.2f' "$ostree_s")" 0.33
report apply_s "$(printf '%.2f' "$update_s")" "$(printf '%.2f' "$receive_s")" 1.5
printf '%-22s %10s %10s %7s %8s  %s\n' update-rss_MiB "$(awk -v k="$(cat "$work/rss")" 'BEGIN { printf "%.0f", k / 1024 }')" - - "<256" \
    "$(awk -v k="$(cat "$work/rss")" 'BEGIN { print (k / 1024 < 256) ? "ok" : "MISSED" }')"
note "publish_s is the whole publish of v2 (full stream, plain delta and strata delta); the peer is one static-delta generate"
note "the kernel-update row (v2 -> v3) needs an older kernel than the mirror serves: not measured here"
