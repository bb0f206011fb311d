#!/usr/bin/env bash
# The hub's resident memory per node, as BENCHMARKS.md measures it: the slope of its settled
# RSS between two fleet sizes (default 10,000 and 50,000 hollow nodes), each run on a freshly
# started mosquitto (a broker kept between runs would feed the hub the old fleet's retained
# announcements) with the hub started on its own (so the broker is not counted).
#
#   scripts/hub-memory.sh [SMALL LARGE]
#
# Needs mosquitto and python3, and release builds of the hub and the simulator (built here if
# missing). Settled RSS: the median of the last 10 of 60 idle seconds after the apply,
# sampled every 0.5 s from /proc (jemalloc hands freed pages back within about a second).
set -euo pipefail
cd "$(dirname "$0")/.."
small=${1:-10000}
large=${2:-50000}
bin=target/release
if [[ ! -x $bin/wasmfleet || ! -x $bin/wasmfleet-sim ]]; then
    cargo build --release -p wasmfleet-hub -p wasmfleet-sim
fi
command -v mosquitto >/dev/null || { echo "hub-memory: mosquitto is not installed" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Sets rss_kib to the settled RSS of a hub with $1 idle nodes.
settled_rss() {
    local n=$1 mqtt http run
    mqtt=$(free_port)
    http=$(free_port)
    run=$work/$n
    mkdir -p "$run"
    printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\nmax_inflight_messages 0\n' \
        "$mqtt" >"$run/mosquitto.conf"
    mosquitto -c "$run/mosquitto.conf" >"$run/mosquitto.log" 2>&1 &
    local broker=$!
    pids+=("$broker")
    sleep 1
    $bin/wasmfleet serve --data "$run/hub" --http "127.0.0.1:$http" \
        --broker "mqtt://127.0.0.1:$mqtt" --node-grace-secs 600 >"$run/hub.out" 2>"$run/hub.log" &
    local hub=$!
    pids+=("$hub")
    sleep 3
    (while kill -0 "$hub" 2>/dev/null; do
        echo "$(date +%s.%N) $(awk '/VmRSS/ { print $2 }' "/proc/$hub/status")"
        sleep 0.5
    done) >"$run/rss" &
    $bin/wasmfleet-sim --nodes "$n" --hollow 16 --idle-secs 60 --timeout 240s \
        --hub "http://127.0.0.1:$http" --mqtt "mqtt://127.0.0.1:$mqtt" 2>&1 |
        while IFS= read -r line; do echo "$(date +%s.%N) $line"; done >"$run/sim"
    kill "$hub" "$broker"
    wait "$hub" "$broker" 2>/dev/null || true
    rss_kib=$(python3 - "$run/rss" "$run/sim" <<'PY'
import statistics, sys
rss = [(float(t), int(k)) for t, k in (l.split() for l in open(sys.argv[1])) if k.isdigit()]
idle_end = [float(l.split(" ", 1)[0]) for l in open(sys.argv[2]) if "idle control traffic" in l]
if not idle_end:
    sys.exit("hub-memory: the simulator did not finish its idle phase: " + sys.argv[2])
end = idle_end[0]
print(int(statistics.median(k for t, k in rss if end - 11 < t < end - 1)))
PY
)
}

settled_rss "$small"
a=$rss_kib
echo "hub RSS with $small idle nodes: $((a / 1024)) MiB"
settled_rss "$large"
b=$rss_kib
echo "hub RSS with $large idle nodes: $((b / 1024)) MiB"
python3 -c "print(f'hub memory per node (slope): {($b - $a) / ($large - $small):.2f} KiB')"
