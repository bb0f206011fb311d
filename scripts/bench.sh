#!/usr/bin/env bash
# Prints the foundation's figures from a release build: binary sizes, and from RUNS demo runs
# (hub + 3 agents on this machine) the time from apply to all replicas Running, the hub's RSS
# with 3 nodes, and each agent's RSS with one module running.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
scripts/setup.sh
cargo build --release --workspace
cargo build --release --target wasm32-wasip1 --manifest-path examples/hello/Cargo.toml --target-dir target/guests
echo "binary_size_bytes wasmfleet=$(stat -c %s target/release/wasmfleet) edge-agent=$(stat -c %s target/release/edge-agent)"
for i in $(seq "$RUNS"); do
    port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
    target/release/wasmfleet demo --run-for 3 --module target/guests/wasm32-wasip1/release/hello.wasm \
        --http "127.0.0.1:$(port)" --mqtt "127.0.0.1:$(port)" 2>/dev/null | grep '^figures:' | sed "s/^/run $i /"
done
