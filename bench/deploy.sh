#!/usr/bin/env bash
# Measures strata deploy (and set-default, rollback) against `ostree admin deploy` on the same
# tree, on scratch loop-mounted btrfs file systems, and prints one line per measurement:
#   name  strata  peer  ratio  goal  ok|MISSED|n/a|error
# Run as root from anywhere; see bench/README.md for what is measured and the settings:
#   STRATA  strata binary              (default: <repo>/build/src/cli/strata, as scripts/build makes)
#   STRIP   1 | 0                      (default: 1: time a copy without debug info, as installed)
#   OSTREE  ostree binary              (default: ostree from PATH; missing: the peer rows are n/a)
#   SIZE    size of the large tree     (default: 700M; suffixes K M G as in numfmt --from=iec)
#   TINY    size of the small tree     (default: 5M; both trees also get the same 40 MiB kernel+initrd)
#   SOURCE  where the trees come from  (default: /usr; SOURCE_DIRS picks subdirectories of it)
#   MODULES 0 | 1                      (default: 0; 1: the large tree also gets SOURCE's lib/modules)
#   CACHE   cold | warm                (default: cold: sync and drop caches before every timed command)
#   RUNS    runs per measurement       (default: 1; the fastest run of each side is reported)
#   JSON    also write results here    (default: none)
#   WORKDIR parent of the scratch dir  (default: /var/tmp; images are sparse, need ~4x SIZE free)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STRATA=${STRATA:-$repo/build/src/cli/strata}
OSTREE=${OSTREE:-ostree}
SIZE=${SIZE:-700M}
TINY=${TINY:-5M}
SOURCE=${SOURCE:-/usr}
SOURCE_DIRS=${SOURCE_DIRS:-"bin sbin libexec share include lib"}
CACHE=${CACHE:-cold}
RUNS=${RUNS:-1}
JSON=${JSON:-}
WORKDIR=${WORKDIR:-/var/tmp}

vendor=org.bench.Os
arch=x86_64
root=root:web:$vendor:$arch
usr1=usr:$vendor:$arch:1
usr2=usr:$vendor:$arch:2
id1=$vendor+web+1+$arch # entry ids: <vendor>+<root name>+<version>+<arch> (docs/deployments.md)
id2=$vendor+web+2+$arch
kver=6.1.0-bench
efivars=/sys/firmware/efi/efivars

die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

[ "$(id -u)" = 0 ] || die "must run as root (loop devices, mount, chown)"
[ -x "$STRATA" ] || die "no strata binary at '$STRATA' (build with scripts/build or set STRATA)"
STRATA=$(readlink -f "$STRATA")
for tool in btrfs mkfs.btrfs losetup mount umount tar numfmt unshare; do
    command -v "$tool" >/dev/null || die "'$tool' is missing"
done
case $CACHE in cold | warm) ;; *) die "CACHE must be cold or warm, not '$CACHE'" ;; esac
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$RUNS'"
size_bytes=$(numfmt --from=iec "$SIZE") || die "SIZE '$SIZE' is not a size"
tiny_bytes=$(numfmt --from=iec "$TINY") || die "TINY '$TINY' is not a size"

# strata deploy sets the EFI variable LoaderEntryDefault when efivarfs is writable: on an EFI host
# that would change what the machine itself boots. So there the whole script runs in a private
# mount namespace with an empty tmpfs over efivarfs (strata then writes its variable into that).
if [ -d "$efivars" ] && [ -z "${STRATA_BENCH_PRIVATE_NS:-}" ]; then
    note "EFI variables present: re-running in a private mount namespace that hides them"
    exec env STRATA_BENCH_PRIVATE_NS=1 unshare --mount --propagation private -- "$BASH" "${BASH_SOURCE[0]}" "$@"
fi
if [ -n "${STRATA_BENCH_PRIVATE_NS:-}" ]; then
    mount -t tmpfs -o size=1M,mode=0755 strata-bench-efivars "$efivars" || die "cannot hide '$efivars'"
fi

# --- scratch world: everything lives in one private dir; the trap undoes exactly what we did ---
work=$(mktemp -d "$WORKDIR/strata-bench.XXXXXX")
mounts=()  # mount points, in mount order
loops=()   # "device image" pairs we attached

cleanup() {
    set +e
    local i dev img
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
        umount "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}"
    done
    for i in "${loops[@]}"; do
        dev=${i%% *} img=${i#* }
        # Detach only if the device still backs our image: never someone else's loop device.
        [ "$(cat "/sys/block/${dev##*/}/loop/backing_file" 2>/dev/null)" = "$img" ] && losetup -d "$dev"
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The binary as it is installed (`cmake --install --strip`, a distribution's package): without the
# ~100 MB of debug info of a RelWithDebInfo build, whose read-around a cold start would pay (~7 ms).
if [ "${STRIP:-1}" = 1 ]; then
    objcopy --strip-debug "$STRATA" "$work/strata" || die "cannot strip a copy of '$STRATA'"
    STRATA=$work/strata
fi

# make_pool DIR BYTES: a fresh btrfs on a sparse image, mounted at DIR.
make_pool() {
    local mnt=$1 bytes=$2 img=$1.img dev
    truncate -s "$bytes" "$img"
    mkfs.btrfs -q "$img" >/dev/null 2>&1 || die "mkfs.btrfs '$img' failed"
    dev=$(losetup -f --show "$img")
    loops+=("$dev $img")
    mkdir -p "$mnt"
    mount "$dev" "$mnt"
    mounts+=("$mnt")
}

config=$work/strata.toml  # built-in defaults only: the host's /etc/strata must not matter
: >"$config"
strata() { "$STRATA" --config "$config" -q "$@"; }
# strata_in POOL BOOT ARGS...: strata on one pool with its own $BOOT.
strata_in() {
    local pool=$1 boot=$2
    shift 2
    strata --pool "$pool" --boot-dir "$boot" "$@"
}
# must DESCRIPTION CMD...: a setup step; its failure ends the run with its output.
must() {
    local what=$1 out
    shift
    out=$("$@" 2>&1) || die "$what failed: $out"
}

# Feature detection: the verbs of the binary under test.
strata_help=$("$STRATA" --help 2>&1 || true)
has_deploy=1
for verb in deploy set-default rollback root; do
    grep -qE "^ +$verb " <<<"$strata_help" || has_deploy=0
done
has_ostree=1
command -v "$OSTREE" >/dev/null || { has_ostree=0; note "no '$OSTREE': the ostree rows are n/a (apt-get install ostree)"; }

# --- timing ----------------------------------------------------------------------------------
prepare_caches() {
    sync
    [ "$CACHE" = cold ] && echo 3 >/proc/sys/vm/drop_caches
    return 0
}

# warm_up PATH...: with CACHE=warm, read the inputs once so both sides start from a hot cache.
warm_up() {
    [ "$CACHE" = warm ] || return 0
    find "$@" -xdev -type f -print0 | xargs -0 -r cat >/dev/null
}

# timed VAR CMD...: runs CMD plus a sync (write-back counts) from the prepared cache state and
# stores the wall-clock seconds in VAR. Returns CMD's status; its output goes to $work/last.log.
# shellcheck disable=SC2034  # out is a nameref to the caller's variable
timed() {
    local -n out=$1
    shift
    prepare_caches
    local t0=$EPOCHREALTIME rc=0
    if "$@" >"$work/last.log" 2>&1; then sync; else rc=$?; fi
    local t1=$EPOCHREALTIME
    out=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')
    ((rc == 0)) || note "failed ($rc): $* -- $(tail -n 5 "$work/last.log")"
    return "$rc"
}

min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b + 0 < a + 0) ? b : a }'; }

# --- results ---------------------------------------------------------------------------------
rows=()
json_rows=()
errors=0

# row NAME STRATA PEER GOAL_OP GOAL [STATUS]: GOAL_OP is "ratio<=" (STRATA/PEER at most GOAL) or
# "faster>=" (PEER/STRATA at least GOAL, shown as a ratio of at most 1/GOAL). Times in seconds.
row() {
    local name=$1 s=$2 p=$3 op=$4 goal=$5 status=${6:-} ratio=- goal_text=-
    if [[ $s =~ ^[0-9.]+$ && $p =~ ^[0-9.]+$ ]]; then
        ratio=$(awk -v s="$s" -v p="$p" 'BEGIN { if (p > 0) printf (s / p < 0.1 ? "%.4f" : "%.2f"), s / p; else print "-" }')
    fi
    case $op in
    "ratio<=") goal_text="<=${goal}x" ;;
    "faster>=") goal_text="<=1/${goal}x" ;;
    esac
    if [ -z "$status" ]; then
        case $op in
        "ratio<=") status=$(awk -v r="$ratio" -v g="$goal" 'BEGIN { print (r != "-" && r <= g) ? "ok" : "MISSED" }') ;;
        "faster>=") status=$(awk -v s="$s" -v p="$p" -v g="$goal" 'BEGIN { print (s > 0 && p / s >= g) ? "ok" : "MISSED" }') ;;
        *) status=info ;;
        esac
    fi
    [ "$status" = error ] && errors=$((errors + 1))
    rows+=("$(printf '%-22s %10s %10s %7s %9s  %s' "$name" "$s" "$p" "$ratio" "$goal_text" "$status")")
    local js=null jp=null jr=null
    [[ $s =~ ^[0-9.]+$ ]] && js=$s
    [[ $p =~ ^[0-9.]+$ ]] && jp=$p
    [[ $ratio =~ ^[0-9.]+$ ]] && jr=$ratio
    json_rows+=("$(printf '{"name": "%s", "strata": %s, "peer": %s, "ratio": %s, "goal": "%s", "unit": "s", "result": "%s"}' \
        "$name" "$js" "$jp" "$jr" "$goal_text" "$status")")
}

# --- the test trees --------------------------------------------------------------------------
note "strata: $STRATA ($("$STRATA" --version 2>/dev/null | head -n 1 || echo '?'))"
((has_ostree)) && note "ostree: $("$OSTREE" --version 2>/dev/null | awk -F"'" '/Version/ { print $2 }')"
note "work dir: $work; cache: $CACHE; runs: $RUNS"
make_pool "$work/pool" $((2 * size_bytes + (2 << 30)))     # strata, the large tree
make_pool "$work/tiny" $((2 * tiny_bytes + (1 << 30)))     # strata, the small tree
make_pool "$work/boot" $((1 << 30))                        # every $BOOT (strata's and ostree's)
make_pool "$work/ostree" $((2 * size_bytes + (2 << 30)))   # the ostree sysroot
pool=$work/pool tiny=$work/tiny
boot_large=$work/boot/strata-large boot_tiny=$work/boot/strata-tiny
mkdir -p "$boot_large" "$boot_tiny"

# The fake kernel, the same bytes in every tree: 10 MiB vmlinuz, 30 MiB initramfs.img (a name both
# strata and ostree look for in lib/modules/<kver>/).
mkdir "$work/kernel"
head -c $((10 << 20)) /dev/urandom >"$work/kernel/vmlinuz"
head -c $((30 << 20)) /dev/urandom >"$work/kernel/initramfs.img"

source "$repo/bench/tree.sh"  # make_tree

# version_2 TREE: the trivial change between version 1 and 2 (lib/os-release says 2).
version_2() {
    rm -f "$1/lib/os-release"
    printf 'NAME="Bench OS"\nPRETTY_NAME="Bench OS 2"\nID=bench\nVERSION_ID=2\n' >"$1/lib/os-release"
}

note "copying up to $(numfmt --to=iec "$size_bytes") and $(numfmt --to=iec "$tiny_bytes") of $SOURCE ($SOURCE_DIRS)"
taken_large=$(make_tree "$pool/tree-1" "$size_bytes")
[ "${MODULES:-0}" = 1 ] && taken_large=$((taken_large + $(add_modules "$pool/tree-1")))
taken_tiny=$(make_tree "$tiny/tree-1" "$tiny_bytes")
sync
entries_large=$(find "$pool/tree-1" | wc -l)
entries_tiny=$(find "$tiny/tree-1" | wc -l)
note "large tree: $entries_large entries, $(numfmt --to=iec "$taken_large") in files + 40M kernel and initrd"
note "small tree: $entries_tiny entries, $(numfmt --to=iec "$taken_tiny") in files + 40M kernel and initrd"

# --- strata: version 1 and 2 of the usr tree and a root, on each pool --------------------------
# Version 2 is a reflinked copy of the tree with the trivial change, imported on top of version 1.
for p in "$pool" "$tiny"; do
    cp -a --reflink=always "$p/tree-1" "$p/tree-2"
    version_2 "$p/tree-2"
done
if ((has_deploy)); then
    for p in "$pool" "$tiny"; do
        must "import $usr1" strata --pool "$p" import "$usr1" --from-dir "$p/tree-1"
        must "import $usr2" strata --pool "$p" import "$usr2" --from-dir "$p/tree-2" --base "$usr1"
        must "root create" strata --pool "$p" root create web --vendor "$vendor" --arch "$arch"
    done
else
    note "this strata has no deploy, set-default, rollback or root: its rows are n/a"
fi

# strata_first POOL BOOT VAR: the root's first deploy, of version 1 (pinned with --version, since 2
# is the newest), kernel copy included; VAR gets the time. From the second run on, the root is
# recreated and the kernel copies are removed first, so each run starts from the same state.
strata_first_run=()
strata_first() {
    local p=$1 b=$2
    if [[ " ${strata_first_run[*]} " == *" $p "* ]]; then
        must "root remove" strata_in "$p" "$b" root remove "$root"
        must "root create" strata --pool "$p" root create web --vendor "$vendor" --arch "$arch"
        rm -rf "${b:?}/$vendor"
    fi
    strata_first_run+=("$p")
    warm_up "$p/$usr1"
    timed "$3" strata_in "$p" "$b" deploy "$root" --version 1 || return 1
    # It did what it says: the kernel is on $BOOT, and the entry is there.
    if ! [ -f "$b/$vendor/1/linux" ] || ! [ -f "$b/$vendor/1/initrd" ] || ! compgen -G "$b/loader/entries/$id1*.conf" >/dev/null; then
        note "strata deploy left no kernel or entry under $b"
        return 1
    fi
}

# strata_again POOL BOOT VAR_SET VAR_ROLLBACK VAR_DEPLOY: with version 2 the default (deployed
# once, untimed), times set-default of version 1, rollback (back to 2) and deploy --version 1. Each
# changes the default while the kernels of both versions are already on $BOOT, and each leaves a
# usr, so each takes a state snapshot.
strata_again() {
    local p=$1 b=$2
    must "deploy $usr2" strata_in "$p" "$b" deploy "$root" --version 2
    [ -f "$b/$vendor/2/linux" ] || { note "no kernel of version 2 under $b"; return 1; }
    warm_up "$p/$usr1" "$p/$usr2"
    timed "$3" strata_in "$p" "$b" set-default "$id1" || return 1
    timed "$4" strata_in "$p" "$b" rollback "$root" || return 1
    grep -q "^default $id2" "$b/loader/loader.conf" || { note "rollback did not make $id2 the default"; return 1; }
    timed "$5" strata_in "$p" "$b" deploy "$root" --version 1 || return 1
    grep -q "^default $id1" "$b/loader/loader.conf" || { note "deploy did not make $id1 the default"; return 1; }
}

# --- ostree: a sysroot on its own btrfs, both versions committed ---------------------------------
# Its /boot is a bind mount of a directory on the boot file system, as $BOOT is for strata: on the
# sysroot's own file system ostree would hardlink the kernel out of its repo instead of copying it.
# The commit is the same tree under usr/ (ostree wants a whole root: usr/ and usr/etc/); the kernel
# is found at usr/lib/modules/<kver>/vmlinuz with initramfs.img beside it. Version 2 is version 1
# plus the same changed usr/lib/os-release. No boot loader is installed: ostree then writes only
# the BLS entries under /boot/loader/entries, which is what strata writes too.
sysroot=$work/ostree/sysroot
ostree_ready=0
ostree_setup() {
    local stage=$work/ostree/stage overlay=$work/ostree/overlay repo=$sysroot/ostree/repo
    mkdir -p "$sysroot" "$stage/usr/etc" "$overlay/usr/lib" "$work/boot/ostree"
    "$OSTREE" admin init-fs --modern "$sysroot" &&
        mount --bind "$work/boot/ostree" "$sysroot/boot" && mounts+=("$sysroot/boot") &&
        "$OSTREE" admin --sysroot="$sysroot" os-init bench &&
        cp -a "$pool/tree-1/." "$stage/usr/" &&
        "$OSTREE" --repo="$repo" commit -b bench/1 --tree=dir="$stage" &&
        cp -a "$pool/tree-2/lib/os-release" "$overlay/usr/lib/" &&
        "$OSTREE" --repo="$repo" commit -b bench/2 --tree=ref=bench/1 --tree=dir="$overlay" &&
        rm -rf "$stage"
}
# ostree_deploy REF: `ostree admin deploy` without pruning the repo afterwards (strata's deploy
# does not collect garbage either; `strata gc` does).
ostree_deploy() { "$OSTREE" admin --sysroot="$sysroot" deploy --os=bench --no-prune "$1"; }
ostree_deployments() { find "$sysroot/ostree/deploy/bench/deploy" -mindepth 1 -maxdepth 1 -type d | wc -l; }
if ((has_ostree)); then
    note "committing the large tree to the ostree repo"
    if ostree_setup >"$work/ostree-setup.log" 2>&1; then
        ostree_ready=1
    else
        note "ostree setup failed, its rows are n/a: $(tail -n 5 "$work/ostree-setup.log")"
    fi
fi

# ostree_first VAR: first deploy of version 1 (kernel copied to /boot); from the second run on the
# deployment is removed first (undeploy also removes its kernel from /boot).
ostree_first_runs=0
ostree_first() {
    if ((ostree_first_runs++)); then
        must "ostree undeploy" "$OSTREE" admin --sysroot="$sysroot" undeploy 0
    fi
    warm_up "$sysroot/ostree/repo"
    timed "$1" ostree_deploy bench/1 || return 1
    if [ "$(ostree_deployments)" != 1 ] || ! compgen -G "$sysroot/boot/loader/entries/*.conf" >/dev/null; then
        note "ostree deploy left no deployment or entry"
        return 1
    fi
    if [ -z "$(find "$sysroot/boot/ostree" -name 'vmlinuz-*' -type f -links 1)" ]; then
        note "ostree did not copy the kernel to /boot (hardlinked or missing)"
        return 1
    fi
}

# ostree_again VAR: deploy version 2 while version 1 is deployed; its kernel (same bytes, same boot
# checksum) is already in /boot. From the second run on, version 2 is undeployed first.
ostree_again_runs=0
ostree_again() {
    if ((ostree_again_runs++)); then
        must "ostree undeploy" "$OSTREE" admin --sysroot="$sysroot" undeploy 0
    fi
    warm_up "$sysroot/ostree/repo"
    timed "$1" ostree_deploy bench/2 || return 1
    [ "$(ostree_deployments)" = 2 ] || { note "ostree deploy of version 2 left $(ostree_deployments) deployments"; return 1; }
}

# --- a) first deploy, kernel copy included; and c) the same on the small tree ------------------
fs_l="" fs_t="" fo="" s="" t="" o="" s_err=0 t_err=0 o_err=0
for ((run = 1; run <= RUNS; run++)); do
    if ((has_deploy)); then
        if ((!s_err)); then strata_first "$pool" "$boot_large" s && fs_l=$(min "$fs_l" "$s") || s_err=1; fi
        if ((!t_err)); then strata_first "$tiny" "$boot_tiny" t && fs_t=$(min "$fs_t" "$t") || t_err=1; fi
    fi
    if ((ostree_ready && !o_err)); then ostree_first o && fo=$(min "$fo" "$o") || o_err=1; fi
done
((has_deploy)) || s_err=n/a t_err=n/a
((ostree_ready)) || o_err=n/a
value() { case $1 in 0) echo "$2" ;; 1) echo error ;; *) echo n/a ;; esac; }
first_l=$(value "$s_err" "$fs_l") first_t=$(value "$t_err" "$fs_t") first_o=$(value "$o_err" "$fo")

# --- b) deploys while the kernel is already on $BOOT ---------------------------------------------
sd="" rb="" ag="" ag_t="" ao="" x="" y="" z="" s_err2=$s_err t_err2=$t_err o_err2=$o_err
for ((run = 1; run <= RUNS; run++)); do
    if [ "$s_err2" = 0 ]; then
        if strata_again "$pool" "$boot_large" x y z; then
            sd=$(min "$sd" "$x") rb=$(min "$rb" "$y") ag=$(min "$ag" "$z")
        else s_err2=1; fi
    fi
    if [ "$t_err2" = 0 ]; then
        if strata_again "$tiny" "$boot_tiny" x y z; then ag_t=$(min "$ag_t" "$z"); else t_err2=1; fi
    fi
    if [ "$o_err2" = 0 ]; then ostree_again x && ao=$(min "$ao" "$x") || o_err2=1; fi
done
again_l=$(value "$s_err2" "$ag") again_t=$(value "$t_err2" "$ag_t") again_o=$(value "$o_err2" "$ao")
set_l=$(value "$s_err2" "$sd") roll_l=$(value "$s_err2" "$rb")

# --- report ----------------------------------------------------------------------------------
# status_of S P: "" (compute), or error / n/a when a side has no number.
status_of() {
    local v
    for v in "$@"; do [ "$v" = error ] && { echo error; return; }; done
    for v in "$@"; do [ "$v" = n/a ] && { echo n/a; return; }; done
    echo ""
}
row deploy-first_s "$first_l" "$first_o" "faster>=" 15 "$(status_of "$first_l" "$first_o")"
row deploy-again_s "$again_l" "$again_o" "faster>=" 50 "$(status_of "$again_l" "$again_o")"
row set-default_s "$set_l" "$again_o" "faster>=" 50 "$(status_of "$set_l" "$again_o")"
row rollback_s "$roll_l" "$again_o" "faster>=" 50 "$(status_of "$roll_l" "$again_o")"
row deploy-flat_s "$first_l" "$first_t" "ratio<=" 1.5 "$(status_of "$first_l" "$first_t")"
row deploy-again-flat_s "$again_l" "$again_t" "ratio<=" 1.5 "$(status_of "$again_l" "$again_t")"

printf '%-22s %10s %10s %7s %9s  %s\n' name strata peer ratio goal result
printf '%s\n' "${rows[@]}"
if [ -n "$JSON" ]; then
    {
        printf '{\n  "strata": "%s",\n  "ostree": %s,\n' "$STRATA" \
            "$( ((has_ostree)) && printf '"%s"' "$("$OSTREE" --version | awk -F"'" '/Version/ { print $2 }')" || echo null)"
        printf '  "size_bytes": %s,\n  "tree_entries": %s,\n  "tiny_bytes": %s,\n  "tiny_entries": %s,\n' \
            "$taken_large" "$entries_large" "$taken_tiny" "$entries_tiny"
        printf '  "kernel_bytes": %s,\n  "cache": "%s",\n  "runs": %s,\n  "results": [\n' $((40 << 20)) "$CACHE" "$RUNS"
        for ((i = 0; i < ${#json_rows[@]}; i++)); do
            printf '    %s%s\n' "${json_rows[i]}" "$( ((i + 1 < ${#json_rows[@]})) && echo ,)"
        done
        printf '  ]\n}\n'
    } >"$JSON"
    note "wrote $JSON"
fi
((errors == 0))
