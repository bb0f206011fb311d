#!/usr/bin/env bash
# The whole test suite: unit and property tests, end-to-end tests with real hub, agent and
# mosquitto processes on 127.0.0.1, and the no_std build of the wire contract.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# End-to-end tests run the binaries of this same build.
cargo build --workspace --bins
cargo test --workspace
# proto is no_std: it must build for a Cortex-M4F microcontroller.
cargo build -p wasmfleet-proto --target thumbv7em-none-eabihf
