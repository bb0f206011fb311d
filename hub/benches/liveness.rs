//! What a heartbeat costs the hub: `Liveness::beat` (the MQTT router's whole work per beat)
//! and the periodic `expire` scan, at 1,000, 10,000 and 100,000 nodes. A beat must cost the
//! same at every size (one hash lookup, no allocation), and the scan stay far below its
//! 200 ms period.
//!
//! Run: `cargo bench -p wasmfleet-hub --bench liveness`. Prints one `figures:` line per size;
//! compare the sizes as ratios within one run.

use std::hint::black_box;
use std::time::Instant;

use wasmfleet_hub::reconcile::liveness::Liveness;

fn main() {
    let mut base = None;
    for nodes in [1_000usize, 10_000, 100_000] {
        let names: Vec<String> = (0..nodes).map(|i| format!("node-{i:06}")).collect();
        let mut l = Liveness::default();
        for n in &names {
            l.connected(n, 0);
        }
        // Beats in node order, round after round, 5 s apart as a fleet sends them.
        let rounds = (2_000_000 / nodes).max(3);
        let start = Instant::now();
        for r in 0..rounds {
            let now = (r as u64 + 1) * 5_000;
            for n in &names {
                black_box(l.beat(n, 5_000, now));
            }
        }
        let per_beat = start.elapsed().as_nanos() as f64 / (rounds * nodes) as f64;
        let start = Instant::now();
        let scans: u32 = 20;
        for s in 0..scans {
            black_box(l.expire(rounds as u64 * 5_000 + u64::from(s)));
        }
        let per_scan_us = start.elapsed().as_micros() as f64 / f64::from(scans);
        let ratio = per_beat / *base.get_or_insert(per_beat);
        println!(
            "figures: nodes={nodes} beat_ns={per_beat:.0} beat_vs_1000={ratio:.2} scan_us={per_scan_us:.0}"
        );
    }
}
