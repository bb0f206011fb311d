#!/usr/bin/env bash
# Run from the repository root after `cargo build --release --workspace` (B= another build
# directory, e.g. B=target/debug). Needs `bc`; the MCU one also the QEMU firmware
# (`cd firmware && cargo build --release`) and qemu-system-arm.
set -u
# Time from SIGSTOP of an agent (default 5 s heartbeat) to NotReady in `get nodes`.
B=${B:-target/release}
for run in 1 2 3; do
  d=$(mktemp -d); hp=$((20000+RANDOM%10000)); mp=$((30000+RANDOM%10000))
  $B/wasmfleet serve --data $d/hub --http 127.0.0.1:$hp --mqtt 127.0.0.1:$mp 2>$d/hub.log & H=$!
  sleep 1
  $B/edge-agent --mqtt mqtt://127.0.0.1:$mp --node n1 --data $d/n1 2>$d/a.log & A=$!
  until $B/wasmfleet --hub http://127.0.0.1:$hp get nodes 2>/dev/null | grep -q " Ready"; do sleep 0.2; done
  sleep $((RANDOM%5)).$((RANDOM%10))
  kill -STOP $A; t0=$(date +%s.%N)
  until $B/wasmfleet --hub http://127.0.0.1:$hp get nodes 2>/dev/null | grep -q NotReady; do sleep 0.1; done
  t1=$(date +%s.%N)
  echo "run $run: NotReady $(echo "$t1 - $t0" | bc) s after SIGSTOP"
  $B/wasmfleet --hub http://127.0.0.1:$hp describe node n1 | grep -i heartbeat | tail -1
  kill -9 $A $H; wait 2>/dev/null; rm -rf $d
done
