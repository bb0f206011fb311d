#!/usr/bin/env bash
# Installs what building Wasmfleet needs on a fresh machine: the pinned Rust toolchain with
# its targets (rust-toolchain.toml). With --test, also what the test suite needs: mosquitto,
# the external broker the tests start on their own ports, and QEMU (qemu-system-arm), which
# runs the microcontroller firmware. Idempotent: re-running it is quick.
set -euo pipefail
cd "$(dirname "$0")/.."

# RUSTUP_AUTO_INSTALL=0 machines install nothing implicitly: install exactly what
# rust-toolchain.toml names (channel, components, targets).
rustup toolchain install

missing=""
if [ "${1:-}" = "--test" ]; then
    command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$missing mosquitto"
    # The microcontroller end-to-end test runs the firmware in QEMU's mps2-an386.
    command -v qemu-system-arm >/dev/null 2>&1 || missing="$missing qemu-system-arm"
fi
if [ -n "$missing" ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
    # The Debian package starts a broker on port 1883, which the demo's embedded broker uses.
    $sudo systemctl stop mosquitto >/dev/null 2>&1 || $sudo service mosquitto stop >/dev/null 2>&1 || true
fi
