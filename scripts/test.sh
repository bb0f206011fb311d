#!/usr/bin/env bash
# The whole test suite: unit and property tests, end-to-end tests with real hub, agent and
# mosquitto processes on 127.0.0.1, and the no_std build of the wire contract.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
# End-to-end tests run the binaries of this same build.
cargo build --workspace --bins
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace 2>&1 | tee "$log"
# The agent's runtime and loop again with feature `compiler` (source modules, local cache).
# `--workspace --tests` keeps every other crate's features as above, so only edge-agent is
# rebuilt; the filters pick its runtime and agent tests.
cargo test --workspace --tests --features edge-agent/compiler -- runtime:: agent:: 2>&1 | tee -a "$log"
# The guest SDK's own tests (its parsers and op encoding), on the host.
(cd modules/sdk && cargo test --quiet --target-dir ../../target/guests) 2>&1 | tee -a "$log"
# proto is no_std: it must build for a Cortex-M4F microcontroller.
cargo build -p wasmfleet-proto --target thumbv7em-none-eabihf
# One closing line for the whole suite (cargo's last line is a doc-test run of 0 tests).
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
