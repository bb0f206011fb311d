#!/usr/bin/env bash
# Run from the repository root after `cargo build --release --workspace` (B= another build
# directory, e.g. B=target/debug). Needs `bc`; the MCU one also the QEMU firmware
# (`cd firmware && cargo build --release`) and qemu-system-arm.
set -u
# A frozen MCU (QEMU SIGSTOPped: its UART socket stays open) goes NotReady through missed
# device heartbeats.
B=${B:-target/release}
d=$(mktemp -d); hp=$((20000+RANDOM%10000)); mp=$((30000+RANDOM%10000)); up=$((40000+RANDOM%10000))
$B/wasmfleet serve --data $d/hub --http 127.0.0.1:$hp --mqtt 127.0.0.1:$mp 2>$d/hub.log & H=$!
firmware/scripts/qemu.sh $up > $d/qemu.log 2>&1 & Q=$!
sleep 1
$B/edge-agent --mqtt mqtt://127.0.0.1:$mp --node gw --data $d/gw --mcu mcu-1=tcp:127.0.0.1:$up 2>$d/gw.log & G=$!
until $B/wasmfleet --hub http://127.0.0.1:$hp get nodes 2>/dev/null | grep mcu-1 | grep -q " Ready"; do sleep 0.2; done
$B/wasmfleet --hub http://127.0.0.1:$hp get nodes
sleep 7
$B/wasmfleet --hub http://127.0.0.1:$hp get nodes | grep mcu-1
kill -STOP $Q; t0=$(date +%s.%N)
until $B/wasmfleet --hub http://127.0.0.1:$hp get nodes 2>/dev/null | grep mcu-1 | grep -q NotReady; do sleep 0.1; done
echo "mcu-1 NotReady $(echo "$(date +%s.%N) - $t0" | bc) s after SIGSTOP of QEMU"
$B/wasmfleet --hub http://127.0.0.1:$hp describe node mcu-1 | grep -i heartbeat | tail -2
kill -CONT $Q; t0=$(date +%s.%N)
until $B/wasmfleet --hub http://127.0.0.1:$hp get nodes 2>/dev/null | grep mcu-1 | grep -q " Ready"; do sleep 0.1; done
echo "mcu-1 Ready again $(echo "$(date +%s.%N) - $t0" | bc) s after SIGCONT"
kill -9 $G $Q $H; wait 2>/dev/null; rm -rf $d
