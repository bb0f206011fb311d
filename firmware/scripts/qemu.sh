#!/usr/bin/env bash
# Runs a firmware ELF on QEMU's mps2-an386 (Cortex-M4F) with its link UART on a TCP socket.
#
#   scripts/qemu.sh PORT [ELF]
#
# PORT  TCP port on 127.0.0.1 where QEMU listens for UART0 (the node's link). QEMU starts
#       the firmware at once, without waiting for a client; bytes the firmware sends while no
#       client is connected are dropped, and a client may connect, leave and reconnect.
# ELF   default: the release build of the QEMU firmware,
#       $CARGO_TARGET_DIR (default firmware/target)/thumbv7em-none-eabihf/release/wasmfleet-firmware-qemu
#       The bring-up binary works too: .../release/wasmfleet-bringup-qemu
#
# QEMU_WAIT_FOR_CLIENT=1 makes QEMU wait for the first client before starting the firmware, so
# a test sees everything from the first byte (e.g. the bring-up banner).
#
# UART1, the firmware's debug console (LED changes, panics, faults), is written to standard
# output. No network (QEMU warns that the board's built-in LAN9118 "has no peer": that is the
# absent network backend), no semihosting, no monitor. QEMU replaces this shell (exec), so
# killing the script's process kills QEMU.
set -euo pipefail

usage() {
    echo "usage: $0 PORT [ELF]" >&2
    echo "  PORT: TCP port (1-65535) on 127.0.0.1 for UART0" >&2
    echo "  ELF:  firmware to run (default: the release wasmfleet-firmware-qemu)" >&2
    exit 2
}

firmware_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$firmware_dir/target}"
default_elf="$target_dir/thumbv7em-none-eabihf/release/wasmfleet-firmware-qemu"

[[ $# -ge 1 && $# -le 2 ]] || usage
port="$1"
if ! [[ "$port" =~ ^[0-9]{1,5}$ ]] || ((10#$port < 1 || 10#$port > 65535)); then
    echo "error: PORT must be a number from 1 to 65535, got '$port'" >&2
    usage
fi
port=$((10#$port))

elf="${2:-$default_elf}"
if [[ ! -f "$elf" ]]; then
    echo "error: no firmware ELF at $elf" >&2
    if [[ $# -lt 2 ]]; then
        echo "build it: cd $firmware_dir && cargo build --release" >&2
    fi
    echo "bring-up: cd $firmware_dir && cargo build --release -p wasmfleet-fw-qemu-mps2-an386" >&2
    echo "          then pass $target_dir/thumbv7em-none-eabihf/release/wasmfleet-bringup-qemu" >&2
    exit 1
fi

wait=off
case "${QEMU_WAIT_FOR_CLIENT:-0}" in
    0 | "") ;;
    1) wait=on ;;
    *) echo "error: QEMU_WAIT_FOR_CLIENT must be 0 or 1" >&2; exit 2 ;;
esac

command -v qemu-system-arm >/dev/null || {
    echo "error: qemu-system-arm not found (Debian package qemu-system-arm)" >&2
    exit 1
}

# -serial order is UART order: UART0 the TCP link (nodelay: no Nagle delay on small frames),
# UART1 the console on standard output. -nographic keeps QEMU off any display; -monitor none
# stops it from putting its monitor on stdio; -nic none removes the board's default LAN9118
# user-mode network.
exec qemu-system-arm \
    -M mps2-an386 \
    -nographic \
    -monitor none \
    -nic none \
    -semihosting-config enable=off \
    -serial "tcp:127.0.0.1:$port,server=on,wait=$wait,nodelay=on" \
    -serial stdio \
    -kernel "$elf"
