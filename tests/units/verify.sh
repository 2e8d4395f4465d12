#!/usr/bin/env bash
# Every unit strata ships passes systemd's own checker, with nothing printed: unknown keys,
# missing dependencies and commands that do not resolve all fail. systemd-analyze looks commands
# up below --root, so the fake root holds the strata binary under test and systemd's targets.
set -euo pipefail
strata=$1 units=$2
root=$(mktemp -d "${TMPDIR:-/tmp}/strata-units-XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/bin" "$root/usr/lib/systemd/system"
cp "$strata" "$root/usr/bin/strata"
# Commands the units name by absolute path must exist below the fake root too.
cp /usr/bin/systemd-tmpfiles "$root/usr/bin/"
cp /usr/lib/systemd/system/*.target "$root/usr/lib/systemd/system/" 2>/dev/null || true
cp "$units"/*.service "$units"/*.timer "$root/usr/lib/systemd/system/"
status=0
for unit in "$units"/*.service "$units"/*.timer; do
    name=$(basename "$unit")
    out=$(systemd-analyze verify --man=no --root="$root" "$root/usr/lib/systemd/system/$name" 2>&1) || status=1
    if [ -n "$out" ]; then
        printf '%s:\n%s\n' "$name" "$out"
        status=1
    fi
done
exit $status
