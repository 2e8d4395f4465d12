# Shared by the benchmarks (sourced): a private scratch directory with loop-mounted btrfs pools,
# removed on exit. Only what this script attached is detached: a loop device is detached only
# while it still backs the image made here.
# scratch_init PREFIX: creates $work under $WORKDIR (default /var/tmp) and installs the exit trap.
# make_pool DIR BYTES: a sparse BYTES image DIR.img, mkfs.btrfs, attached and mounted at DIR.
# on_cleanup CMD: run CMD first when cleaning up (servers the benchmark started).
# require_tools TOOL...: root, the strata binary $STRATA, and each tool on PATH, or die.
die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }
require_tools() {
    [ "$(id -u)" = 0 ] || die "must run as root"
    [ -x "$STRATA" ] || die "no strata binary at '$STRATA'"
    for tool in "$@"; do command -v "$tool" >/dev/null || die "'$tool' is missing"; done
}
scratch_init() {
    work=$(mktemp -d "${WORKDIR:-/var/tmp}/$1.XXXXXX")
    mounts=() loops=() cleanups=()
    trap scratch_cleanup EXIT
    trap 'exit 130' INT TERM
}
on_cleanup() { cleanups+=("$1"); }
scratch_cleanup() {
    set +e
    for c in "${cleanups[@]}"; do eval "$c"; done
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}"; done
    for i in "${loops[@]}"; do
        dev=${i%% *} img=${i#* }
        [ "$(cat "/sys/block/${dev##*/}/loop/backing_file" 2>/dev/null)" = "$img" ] && losetup -d "$dev"
    done
    rm -rf "$work"
}
make_pool() {
    local mnt=$1 img=$1.img dev
    truncate -s "$2" "$img"
    mkfs.btrfs -q "$img" >/dev/null 2>&1
    dev=$(losetup -f --show "$img")
    loops+=("$dev $img")
    mkdir -p "$mnt"
    mount "$dev" "$mnt"
    mounts+=("$mnt")
}
