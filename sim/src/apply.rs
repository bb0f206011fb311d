//! One measured apply: an every-node deployment of a module on the simulated nodes, timed
//! from the apply until every node reports it Running, with the hub's CPU and the traffic per
//! node it cost.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use wasmfleet_hub::cli::client::Client;

use crate::fleet::Record;
use crate::hub;

/// What an apply is measured with.
#[derive(Debug)]
pub struct Bench<'a> {
    /// The hub's API.
    pub client: &'a Client,
    /// What the nodes record.
    pub record: &'a Record,
    /// Nodes that must converge.
    pub nodes: usize,
    /// The hub's process, if the simulator started it (for CPU time).
    pub pid: Option<u32>,
    /// Give up after this long.
    pub timeout: Duration,
    /// Where the hub's log is, for the error when nodes do not converge.
    pub hub_log: String,
}

impl Bench<'_> {
    /// Uploads `module` (not timed), then applies it as `deployment` on every simulated node
    /// with `memory` (e.g. `1Mi`), and waits until all run it. Prints convergence per node,
    /// the hub's CPU and the traffic per node; returns the time to full convergence.
    pub async fn apply(
        &self,
        dir: &Path,
        deployment: &str,
        module: &Path,
        memory: &str,
    ) -> Result<Duration> {
        let manifest = dir.join(format!("{deployment}.yaml"));
        std::fs::write(
            &manifest,
            format!(
                "apiVersion: wasmfleet.dev/v1\nkind: Deployment\nmetadata: {{name: {deployment}}}\nspec:\n  module: {}\n  placement: every-node\n  nodeSelector: {{wasmfleet.dev/simulated: \"true\"}}\n  resources: {{memory: {memory}}}\n",
                module.display()
            ),
        )?;
        // Upload first, untimed: the hub checks and precompiles it for its own engine profile
        // (the simulated nodes' profile) here.
        let doc = &wasmfleet_hub::model::manifest::load(&manifest)?[0];
        let (bytes, spec) = wasmfleet_hub::cli::apply::prepare(doc)?;
        let blob = wasmfleet_hub::cli::client::path(&["v1", "blobs", &spec.module]);
        if !self.client.exists(&blob).await? {
            self.client.put_bytes(&blob, bytes.clone()).await?;
        }
        let record = self.record;
        record.measure(deployment);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let traffic0 = [
            &record.msgs_in,
            &record.bytes_in,
            &record.msgs_out,
            &record.bytes_out,
        ]
        .map(load);
        let cpu0 = self.pid.map(hub::cpu_time);
        let applied_ms = record.origin.elapsed().as_millis() as u64;
        let t0 = Instant::now();
        wasmfleet_hub::cli::apply::submit(self.client, deployment, bytes, spec).await?;
        let total = loop {
            let done = record.convergence_ms(applied_ms);
            if done.len() >= self.nodes {
                break t0.elapsed();
            }
            if t0.elapsed() >= self.timeout {
                bail!(
                    "only {} of {} nodes ran {deployment} after {:?}; the hub's log: {}",
                    done.len(),
                    self.nodes,
                    self.timeout,
                    self.hub_log
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let mut times = record.convergence_ms(applied_ms);
        times.sort_unstable();
        let pct =
            |p: f64| times[((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1];
        println!(
            "convergence per node: p50 {:.3} s, p99 {:.3} s, max {:.3} s",
            pct(0.50) as f64 / 1e3,
            pct(0.99) as f64 / 1e3,
            pct(1.0) as f64 / 1e3
        );
        if let (Some(pid), Some(cpu0)) = (self.pid, cpu0) {
            let used = hub::cpu_time(pid).saturating_sub(cpu0);
            println!(
                "hub CPU during convergence: {:.2} s ({:.0}% of one core)",
                used.as_secs_f64(),
                100.0 * used.as_secs_f64() / total.as_secs_f64().max(1e-3)
            );
        }
        let n = self.nodes as f64;
        let traffic = [
            &record.msgs_in,
            &record.bytes_in,
            &record.msgs_out,
            &record.bytes_out,
        ]
        .map(load);
        let per = |i: usize| (traffic[i] - traffic0[i]) as f64 / n;
        println!(
            "traffic per node for the apply: {:.1} messages / {:.0} bytes to it, {:.1} / {:.0} from it",
            per(0),
            per(1),
            per(2),
            per(3)
        );
        Ok(total)
    }
}
