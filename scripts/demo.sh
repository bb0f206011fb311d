#!/usr/bin/env bash
# The main job on embedded defaults: a hub (embedded MQTT broker + SQLite), 3 local edge
# agents with simulated devices, the sensor and alarm examples deployed on different nodes
# (the alarm switching GPIO 17 on the sensor's readings), their logs streamed until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Built apart, as shipped: the hub with its compilers, the agent without one (built together,
# cargo would unify their wasmtime features and give the agent Cranelift too).
cargo build --release -p wasmfleet-hub
cargo build --release -p edge-agent
exec target/release/wasmfleet demo "$@"
