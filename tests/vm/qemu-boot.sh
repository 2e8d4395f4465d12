#!/usr/bin/env bash
# Boots a disk image under QEMU (TCG: KVM is not usable here) with OVMF, serial console to LOG,
# no network, and a hard timeout; the guest powers itself off after printing its marker line.
#   qemu-boot.sh IMAGE VARS LOG [TIMEOUT_S]
# VARS is this machine's copy of OVMF_VARS.fd (created on first use): it carries the EFI
# variables (systemd-boot's LoaderEntry*, boot counting) from one boot of IMAGE to the next.
# A guest that panics or drops to an emergency shell never powers off: QEMU is stopped as soon
# as the log says so (exit 125), instead of at the timeout.
# One vCPU: with two, multi-threaded TCG now and then livelocked the guest when its kernel
# patched a static key ("random: crng init done", then one CPU looping on the int3 of
# text_poke_bp and the other in an RCU stall, found in a hung boot's log); with one CPU, no
# other one runs the code being patched.
set -euo pipefail
image=$1 vars=$2 log=$3 timeout_s=${4:-300}
code=/usr/share/OVMF/OVMF_CODE.fd
[ -r "$code" ] || { echo "qemu-boot: $code missing (install ovmf)" >&2; exit 1; }
[ -e "$vars" ] || cp /usr/share/OVMF/OVMF_VARS.fd "$vars"
: >"$log"
timeout --kill-after=10 "$timeout_s" qemu-system-x86_64 -accel tcg -machine q35 -m 1536 -smp 1 \
    -drive if=pflash,format=raw,unit=0,readonly=on,file="$code" \
    -drive if=pflash,format=raw,unit=1,file="$vars" \
    -drive file="$image",format=raw,if=virtio \
    -nic none -display none -serial file:"$log" -monitor none -no-reboot </dev/null >"$log.qemu" 2>&1 &
qemu=$!
stuck='Kernel panic - not syncing|You are in emergency mode|Entering emergency mode|Give root password for maintenance'
while kill -0 "$qemu" 2>/dev/null; do
    if grep -aqE "$stuck" "$log"; then
        kill "$qemu" 2>/dev/null || true
        wait "$qemu" || true
        echo "qemu-boot: the guest is stuck: $(grep -aoE "$stuck" "$log" | head -1) (see $log)" >&2
        exit 125
    fi
    sleep 2
done
rc=0
wait "$qemu" || rc=$?
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then echo "qemu-boot: timeout after ${timeout_s}s (see $log)" >&2; exit 124; fi
exit "$rc"
