#!/usr/bin/env bash
# The main job on embedded defaults: a hub (embedded MQTT broker + SQLite), 3 local edge
# agents, the example module built and deployed, its logs streamed until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --workspace
exec target/release/wasmfleet demo "$@"
