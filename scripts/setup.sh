#!/usr/bin/env bash
# Installs what building Wasmfleet needs on a fresh machine: the pinned Rust toolchain with
# its targets (rust-toolchain.toml). With --test, also what the test suite needs: mosquitto,
# the external broker the tests start on their own ports. Idempotent: re-running it is quick.
set -euo pipefail
cd "$(dirname "$0")/.."

# RUSTUP_AUTO_INSTALL=0 machines install nothing implicitly: install exactly what
# rust-toolchain.toml names (channel, components, targets).
rustup toolchain install

if [ "${1:-}" = "--test" ] && ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mosquitto >/dev/null
    # The Debian package starts a broker on port 1883, which the demo's embedded broker uses.
    $sudo systemctl stop mosquitto >/dev/null 2>&1 || $sudo service mosquitto stop >/dev/null 2>&1 || true
fi
