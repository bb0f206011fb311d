#!/usr/bin/env bash
# The whole test suite: unit and property tests, end-to-end tests with real hub, agent,
# mosquitto and QEMU processes on 127.0.0.1, and the firmware for every microcontroller target.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
# End-to-end tests run the binaries of this same build.
cargo build --workspace --bins
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# The firmware (its own workspace, no_std): every crate for the Cortex-M4F (the QEMU end-to-end
# test runs this build), the node core and runtime for RISC-V, and their host tests.
(cd firmware && cargo build --release && cargo build-riscv && cargo test-host) 2>&1 | tee -a "$log"
cargo test --workspace 2>&1 | tee -a "$log"
# The agent's runtime and loop again with feature `compiler` (source modules, local cache).
# `--workspace --tests` keeps every other crate's features as above, so only edge-agent is
# rebuilt; the filters pick its runtime and agent tests.
cargo test --workspace --tests --features edge-agent/compiler -- runtime:: agent:: 2>&1 | tee -a "$log"
# The guest SDK's own tests (its parsers and op encoding), on the host.
(cd modules/sdk && cargo test --quiet --target-dir ../../target/guests) 2>&1 | tee -a "$log"
# One closing line for the whole suite (cargo's last line is a doc-test run of 0 tests).
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
