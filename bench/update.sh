#!/usr/bin/env bash
# Measures `strata update` (verify index, download over loopback HTTP, check sha256, validate,
# receive, deploy) against raw `zstd -d | btrfs receive` of the same incremental stream, and
# `strata publish` of a version with deltas from the 3 before it. One line per measurement:
#   name  strata  peer  ratio  goal  ok|MISSED
# Run as root. Settings (environment):
#   STRATA  strata binary           (default: <repo>/build/src/cli/strata)
#   SIZE    size of the tree        (default: 700M, copied from SOURCE)
#   SOURCE  where the tree comes from (default: /usr; SOURCE_DIRS picks subdirectories)
#   CHANGE  share of files changed per version, percent (default: 5)
#   WORKDIR parent of the scratch dir (default: /var/tmp; needs ~4x SIZE free)
#   RUNS    timed runs of the update and of the raw receive (default: 1; the fastest of each
#           side is reported, as bench/deploy.sh does: single cold runs vary by +-15 % here)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STRATA=$(readlink -f "${STRATA:-$repo/build/src/cli/strata}")
SIZE=${SIZE:-700M}
SOURCE=${SOURCE:-/usr}
SOURCE_DIRS=${SOURCE_DIRS:-"bin sbin libexec share include lib"}
CHANGE=${CHANGE:-5}
RUNS=${RUNS:-1}
WORKDIR=${WORKDIR:-/var/tmp}
vendor=org.bench.Os
arch=x86_64

source "$repo/bench/scratch.sh"
require_tools btrfs mkfs.btrfs losetup zstd nginx numfmt
size_bytes=$(numfmt --from=iec "$SIZE")

scratch_init strata-bench-update
pool_bytes=$((size_bytes * 3 + (1 << 30)))
config=$work/strata.toml
printf '[boot]\ntries = 3\n' >"$config"
strata() { "$STRATA" --config "$config" -q "$@"; }
now() { date +%s.%N; }
cold() { sync; echo 3 >/proc/sys/vm/drop_caches; }
report() { # name strata peer goal-ratio
    local ratio ok
    ratio=$(awk -v a="$2" -v b="$3" 'BEGIN { printf "%.2f", a / b }')
    ok=$(awk -v r="$ratio" -v g="$4" 'BEGIN { print (r <= g) ? "ok" : "MISSED" }')
    printf '%-24s %10.3f %10.3f %7s %8s  %s\n' "$1" "$2" "$3" "$ratio" "<=${4}x" "$ok"
}

# --- trees: v1 from SOURCE, each next version changes CHANGE% of the files and adds a few ---
kver=6.1.0-bench
mkdir -p "$work/kernel"
head -c $((10 << 20)) /dev/urandom >"$work/kernel/vmlinuz"
head -c $((30 << 20)) /dev/urandom >"$work/kernel/initramfs.img"
source "$repo/bench/tree.sh"
note "copying up to $SIZE of $SOURCE ($SOURCE_DIRS)"
tree=$work/tree
make_tree "$tree" "$size_bytes" >/dev/null
make_pool "$work/vendor" "$pool_bytes"
make_pool "$work/client" "$pool_bytes"
make_pool "$work/raw" "$pool_bytes"
strata keygen -o "$work/key"
for v in 1 2 3 4; do
    if [ "$v" -gt 1 ]; then
        find "$tree" -type f | awk -v p="$CHANGE" 'NR % int(100 / p) == 0' | while read -r f; do
            printf 'v%s\n' "$v" >>"$f"
        done
        head -c 4M /dev/urandom >"$tree/lib/new-in-$v"
    fi
    strata --pool "$work/vendor" import "usr:$vendor:$arch:$v" --from-dir "$tree"
done

# --- publish: v1..v3 first, then the timed one: v4 with deltas from the 3 before it ---
repo_dir=$work/www/repo
mkdir -p "$repo_dir"
strata --pool "$work/vendor" publish "$repo_dir" "usr:$vendor:$arch:1" --key "$work/key.key"
strata --pool "$work/vendor" publish "$repo_dir" "usr:$vendor:$arch:2" --deltas-from 1 --key "$work/key.key"
strata --pool "$work/vendor" publish "$repo_dir" "usr:$vendor:$arch:3" --deltas-from 2 --key "$work/key.key"
t0=$(now)
strata --pool "$work/vendor" publish "$repo_dir" "usr:$vendor:$arch:4" --deltas-from 3 --key "$work/key.key"
publish_s=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { print b - a }')

# --- loopback HTTP ---
port=$((20000 + RANDOM % 20000))
cat >"$work/nginx.conf" <<CONF
daemon off; master_process off; pid $work/nginx.pid; error_log $work/nginx.err;
events {}
http { access_log off; client_body_temp_path $work/t1; proxy_temp_path $work/t2; fastcgi_temp_path $work/t3;
  uwsgi_temp_path $work/t4; scgi_temp_path $work/t5; sendfile on;
  server { listen 127.0.0.1:$port; root $work/www; } }
CONF
nginx -c "$work/nginx.conf" &
nginx_pid=$!
on_cleanup 'kill "$nginx_pid"; wait "$nginx_pid" 2>/dev/null'
sleep 1

# --- client: holds v3 (received from its full stream, deployed), then the timed update to v4 ---
boot=$work/boot
mkdir -p "$boot"
pick() { # TREE-VERSION PARENT-VERSION|"": the payload file in the index
    python3 - "$repo_dir/index.json" "$1" "$2" <<'PY'
import json, sys
index, version, parent = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
for t in index["trees"]:
    if t["name"].endswith(":" + version):
        for p in t["payloads"]:
            if p["kind"] != "btrfs-send":
                continue
            if (p["parent"] is None and not parent) or (p["parent"] and p["parent"]["name"].endswith(":" + parent)):
                print(p["file"])
PY
}
payload_full3=$(pick 3 "")
payload_delta4=$(pick 4 3)
strata remote add bench "http://127.0.0.1:$port/repo" --key "$work/key.pub"
strata --pool "$work/client" root create web --vendor "$vendor" --arch "$arch"
strata --pool "$work/client" import "usr:$vendor:$arch:3" --from-stream "$repo_dir/$payload_full3"
strata --pool "$work/client" --boot-dir "$boot" deploy "root:web:$vendor:$arch" >/dev/null
zstd -dc "$repo_dir/$payload_full3" | btrfs receive -q "$work/raw" >/dev/null
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b + 0 < a + 0) ? b : a }'; }
update_s="" receive_s=""
for ((run = 1; run <= RUNS; run++)); do
    if ((run > 1)); then # back to v3, as before the first run: v4 and its entry gone
        strata --pool "$work/client" --boot-dir "$boot" deploy "root:web:$vendor:$arch" --version 3 >/dev/null
        strata --pool "$work/client" --boot-dir "$boot" remove --force "usr:$vendor:$arch:4" >/dev/null
        strata --pool "$work/client" --boot-dir "$boot" gc >/dev/null
        btrfs subvolume sync "$work/client" >/dev/null
        btrfs subvolume delete "$work/raw/usr:$vendor:$arch:4" >/dev/null
        btrfs subvolume sync "$work/raw" >/dev/null
    fi
    cold
    t0=$(now)
    strata --pool "$work/client" --boot-dir "$boot" update >/dev/null
    sync
    update_s=$(min "$update_s" "$(awk -v a="$t0" -v b="$(now)" 'BEGIN { print b - a }')")

    # --- peer: the same delta applied by hand on a pool holding the same v3 ---
    cold
    t0=$(now)
    zstd -dc "$repo_dir/$payload_delta4" | btrfs receive -q "$work/raw" >/dev/null
    sync
    receive_s=$(min "$receive_s" "$(awk -v a="$t0" -v b="$(now)" 'BEGIN { print b - a }')")
done

printf '%-24s %10s %10s %7s %8s  %s\n' name strata peer ratio goal result
report update-delta_s "$update_s" "$receive_s" 1.2
printf '%-24s %10.3f %10s %7s %8s  %s\n' publish-3-deltas_s "$publish_s" - - "<=10s" \
    "$(awk -v s="$publish_s" 'BEGIN { print (s <= 10) ? "ok" : "MISSED" }')"
