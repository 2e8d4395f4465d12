#!/usr/bin/env bash
# Measures strata import/export against the raw tools it wraps, on scratch loop-mounted btrfs
# pools, and prints one line per measurement:
#   name  strata  peer  ratio  goal  ok|MISSED|n/a|error
# Run as root from anywhere; see bench/README.md for what is measured and the settings:
#   STRATA  strata binary              (default: <repo>/build/src/cli/strata, as scripts/build makes)
#   SIZE    size of the test tree      (default: 2G; suffixes K M G as in numfmt --from=iec)
#   SOURCE  where the tree comes from  (default: /usr; SOURCE_DIRS picks subdirectories of it)
#   CACHE   cold | warm                (default: cold: sync and drop caches before every timed command)
#   RUNS    runs per measurement       (default: 1; the fastest run of each side is reported)
#   JSON    also write results here    (default: none)
#   WORKDIR parent of the scratch dir  (default: /var/tmp; images are sparse, need ~4x SIZE free)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STRATA=${STRATA:-$repo/build/src/cli/strata}
SIZE=${SIZE:-2G}
SOURCE=${SOURCE:-/usr}
SOURCE_DIRS=${SOURCE_DIRS:-"bin sbin libexec share include lib"}
CACHE=${CACHE:-cold}
RUNS=${RUNS:-1}
JSON=${JSON:-}
WORKDIR=${WORKDIR:-/var/tmp}

name1=usr:org.bench.Os:x86_64:1
name2=usr:org.bench.Os:x86_64:2
min_stream_bytes=$((2 * 1024 * 1024 * 1024))

die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

[ "$(id -u)" = 0 ] || die "must run as root (loop devices, mount, chown)"
[ -x "$STRATA" ] || die "no strata binary at '$STRATA' (build with scripts/build or set STRATA)"
STRATA=$(readlink -f "$STRATA")
for tool in btrfs mkfs.btrfs losetup mount umount tar numfmt /usr/bin/time; do
    command -v "$tool" >/dev/null || die "'$tool' is missing"
done
case $CACHE in cold | warm) ;; *) die "CACHE must be cold or warm, not '$CACHE'" ;; esac
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$RUNS'"
size_bytes=$(numfmt --from=iec "$SIZE") || die "SIZE '$SIZE' is not a size"

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

# Feature detection: the verbs and options of the binary under test.
strata_help=$("$STRATA" --help 2>&1 || true)
import_help=$("$STRATA" import --help 2>&1 || true)
has_export=0 has_from_stream=0 has_no_base=0
grep -qE '^ +export ' <<<"$strata_help" && has_export=1
grep -q -- '--from-stream' <<<"$import_help" && has_from_stream=1
grep -q -- '--no-base' <<<"$import_help" && has_no_base=1
no_base=()
((has_no_base)) && no_base=(--no-base)

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
# stores the wall-clock seconds in VAR. Returns CMD's status.
# shellcheck disable=SC2034  # out is a nameref to the caller's variable
timed() {
    local -n out=$1
    shift
    prepare_caches
    local t0=$EPOCHREALTIME rc=0
    if "$@"; then sync; else rc=$?; fi
    local t1=$EPOCHREALTIME
    out=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    return "$rc"
}

min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b + 0 < a + 0) ? b : a }'; }

# --- results ---------------------------------------------------------------------------------
rows=()
json_rows=()
errors=0

# row NAME STRATA PEER GOAL_OP GOAL UNIT [STATUS]: GOAL_OP is "ratio<=" (STRATA/PEER at most GOAL),
# "<" (STRATA below GOAL) or "-" (informational).
row() {
    local name=$1 s=$2 p=$3 op=$4 goal=$5 unit=$6 status=${7:-} ratio=- goal_text=-
    if [[ -z $status && $s != n/a && $p != n/a ]]; then
        ratio=$(awk -v s="$s" -v p="$p" 'BEGIN { if (p > 0) printf "%.2f", s / p; else print "-" }')
    fi
    case $op in
    "ratio<=") goal_text="<=${goal}x" ;;
    "<") goal_text="<${goal}${unit}" ;;
    esac
    if [ -z "$status" ]; then
        case $op in
        "ratio<=") status=$(awk -v r="$ratio" -v g="$goal" 'BEGIN { print (r != "-" && r <= g) ? "ok" : "MISSED" }') ;;
        "<") status=$(awk -v s="$s" -v g="$goal" 'BEGIN { print (s < g) ? "ok" : "MISSED" }') ;;
        *) status=info ;;
        esac
    fi
    rows+=("$(printf '%-22s %10s %10s %7s %9s  %s' "$name" "$s" "$p" "$ratio" "$goal_text" "$status")")
    local js=null jp=null jr=null
    [[ $s =~ ^[0-9.]+$ ]] && js=$s
    [[ $p =~ ^[0-9.]+$ ]] && jp=$p
    [[ $ratio =~ ^[0-9.]+$ ]] && jr=$ratio
    json_rows+=("$(printf '{"name": "%s", "strata": %s, "peer": %s, "ratio": %s, "goal": "%s", "unit": "%s", "result": "%s"}' \
        "$name" "$js" "$jp" "$jr" "$goal_text" "$unit" "$status")")
}

# --- the test tree ---------------------------------------------------------------------------
note "strata: $STRATA ($("$STRATA" --version 2>/dev/null || echo '?'))"
note "work dir: $work; cache: $CACHE; runs: $RUNS"
make_pool "$work/pool1" $((3 * size_bytes + (2 << 30)))
make_pool "$work/pool2" $((3 * size_bytes + (2 << 30)))
p1=$work/pool1 p2=$work/pool2
src=$p1/bench-src  # a plain directory on the same filesystem as the pool

# Entries of SOURCE/SOURCE_DIRS in find's pre-order until SIZE bytes of files are taken, copied
# with owners, modes, times, xattrs, ACLs and hardlinks.
note "copying up to $(numfmt --to=iec "$size_bytes") of $SOURCE ($SOURCE_DIRS) to the pool"
list=$work/files.list
: >"$list"
taken=0
dirs=()
for d in $SOURCE_DIRS; do [ -d "$SOURCE/$d" ] && [ ! -L "$SOURCE/$d" ] && dirs+=("$d"); done
((${#dirs[@]})) || die "none of '$SOURCE_DIRS' is a directory in '$SOURCE'"
while IFS=' ' read -r -d '' type bytes path; do
    if [ "$type" = f ]; then
        ((taken + bytes > size_bytes)) && break
        taken=$((taken + bytes))
    fi
    printf '%s\0' "$path" >>"$list"
done < <(cd "$SOURCE" && find "${dirs[@]}" -xdev -printf '%y %s %p\0')
mkdir "$src"
tar -C "$SOURCE" --null --no-recursion -T "$list" --xattrs --xattrs-include='*' --acls -cf - |
    tar -C "$src" -xf - --xattrs --xattrs-include='*' --acls --numeric-owner -p
sync
entries=$(find "$src" | wc -l)
note "tree: $entries entries, $(numfmt --to=iec "$taken") in files"

# --- a) import from a directory on the same filesystem vs cp -a --reflink=always ---------------
peer_reflink() {
    btrfs -q subvolume create "$p1/peer-reflink" >/dev/null &&
        cp -a --reflink=always --no-target-directory -- "$src/." "$p1/peer-reflink" &&
        btrfs -q property set -ts "$p1/peer-reflink" ro true
}
delete_subvolume() { btrfs -q subvolume delete -C "$1" >/dev/null && btrfs -q subvolume sync "$(dirname "$1")"; }

best_s="" best_p="" s="" p=""
for ((run = 1; run <= RUNS; run++)); do
    warm_up "$src"
    timed s strata --pool "$p1" import "$name1" --from-dir "$src" "${no_base[@]}" || { s=error; break; }
    timed p peer_reflink || { p=error; break; }
    best_s=$(min "$best_s" "$s") best_p=$(min "$best_p" "$p")
    if ((run < RUNS)); then delete_subvolume "$p1/$name1" && delete_subvolume "$p1/peer-reflink"; fi
done
if [[ $s == error || $p == error ]]; then
    row import-dir-reflink_s error error "ratio<=" 1.2 s error
    errors=$((errors + 1))
else
    row import-dir-reflink_s "$best_s" "$best_p" "ratio<=" 1.2 s
fi

# --- b) export, then import the stream on a second pool vs btrfs send / btrfs receive ----------
stream=$work/stream
peer_stream=$work/stream.peer
rss_strata="" rss_peer=""
rss_of() { awk -F': ' '/Maximum resident set size/ { print $2 }' "$1"; }

if ((!has_export)); then
    row export_s n/a n/a - - s n/a
    row import-stream_s n/a n/a "ratio<=" 1.1 s n/a
    row import-stream-rss_MiB n/a n/a "<" 64 MiB n/a
elif [[ ! -d $p1/$name1 ]]; then
    row export_s error error - - s error
    errors=$((errors + 1))
else
    best_s="" best_p="" ok=1
    for ((run = 1; run <= RUNS; run++)); do
        rm -f "$stream" "$peer_stream"
        timed s strata --pool "$p1" export "$name1" -o "$stream" || { ok=0; break; }
        timed p btrfs -q send -f "$peer_stream" "$p1/$name1" || { ok=0; break; }
        best_s=$(min "$best_s" "$s") best_p=$(min "$best_p" "$p")
    done
    if ((ok)); then
        row export_s "$best_s" "$best_p" - - s
    else
        row export_s error error - - s error
        errors=$((errors + 1))
    fi
    rm -f "$peer_stream"
    stream_bytes=$(stat -c %s "$stream" 2>/dev/null || echo 0)
    note "stream: $(numfmt --to=iec "$stream_bytes")"

    if ((!has_from_stream)); then
        row import-stream_s n/a n/a "ratio<=" 1.1 s n/a
        row import-stream-rss_MiB n/a n/a "<" 64 MiB n/a
    elif ((!ok)); then
        row import-stream_s error error "ratio<=" 1.1 s error
        errors=$((errors + 1))
    else
        best_s="" best_p="" s="" p=""
        for ((run = 1; run <= RUNS; run++)); do
            [ "$CACHE" = warm ] && cat "$stream" >/dev/null
            timed s /usr/bin/time -v -o "$work/time.strata" "$STRATA" --config "$config" -q --pool "$p2" \
                import "$name2" --from-stream "$stream" || { s=error; break; }
            mkdir -p "$p2/peer-recv"
            timed p /usr/bin/time -v -o "$work/time.peer" btrfs receive -q -f "$stream" "$p2/peer-recv" ||
                { p=error; break; }
            best_s=$(min "$best_s" "$s") best_p=$(min "$best_p" "$p")
            rss_strata=$(min "$rss_strata" "$(rss_of "$work/time.strata")")
            rss_peer=$(min "$rss_peer" "$(rss_of "$work/time.peer")")
            if ((run < RUNS)); then
                delete_subvolume "$p2/$name2"
                for sv in "$p2"/peer-recv/*; do delete_subvolume "$sv"; done
            fi
        done
        if [[ $s == error || $p == error ]]; then
            row import-stream_s error error "ratio<=" 1.1 s error
            row import-stream-rss_MiB error error "<" 64 MiB error
            errors=$((errors + 1))
        else
            row import-stream_s "$best_s" "$best_p" "ratio<=" 1.1 s
            # c) peak RSS (of strata or its largest child, e.g. btrfs receive) on a >= 2 GiB stream.
            mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
            if ((stream_bytes >= min_stream_bytes)); then
                row import-stream-rss_MiB "$(mib "$rss_strata")" "$(mib "$rss_peer")" "<" 64 MiB
            else
                note "the stream is smaller than 2 GiB: raise SIZE for a valid RSS measurement"
                row import-stream-rss_MiB "$(mib "$rss_strata")" "$(mib "$rss_peer")" "<" 64 MiB n/a
            fi
        fi
    fi
fi

# --- report ----------------------------------------------------------------------------------
printf '%-22s %10s %10s %7s %9s  %s\n' name strata peer ratio goal result
printf '%s\n' "${rows[@]}"
if [ -n "$JSON" ]; then
    {
        printf '{\n  "strata": "%s",\n  "size_bytes": %s,\n  "tree_entries": %s,\n  "cache": "%s",\n  "runs": %s,\n' \
            "$STRATA" "$taken" "$entries" "$CACHE" "$RUNS"
        printf '  "stream_bytes": %s,\n  "results": [\n' "${stream_bytes:-null}"
        for ((i = 0; i < ${#json_rows[@]}; i++)); do
            printf '    %s%s\n' "${json_rows[i]}" "$( ((i + 1 < ${#json_rows[@]})) && echo ,)"
        done
        printf '  ]\n}\n'
    } >"$JSON"
    note "wrote $JSON"
fi
((errors == 0))
