//! `wasmfleet-sim --nodes N`: a fleet of simulated agents against a real hub, to measure how
//! fast a deployment converges and what each node costs the hub.
//!
//! By default it starts its own hub (`wasmfleet serve` next to this binary, embedded broker,
//! SQLite in a temporary directory); `--hub URL --mqtt URL` measures a running one. The nodes
//! run the real agent decision logic (`wasmfleet-node`) with simulated instances, each on its
//! own MQTT connection, or `--hollow K` of them over K connections. It applies an every-node
//! deployment of the `hello` example (every node already holds the module: the cached case),
//! or with `--module-kib N` a new module of N KiB that every node fetches through the hub
//! (`--blob-path fan-out|per-node|both`, see [`fetch`]), and prints convergence per node and in
//! total, hub memory and CPU, traffic per node, and for fetches what they cost the hub's
//! connection, ending with `converged N nodes in X s`.

mod apply;
mod fetch;
mod fleet;
mod hub;
mod node;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use wasmfleet_common::BrokerUrl;
use wasmfleet_hub::api::types::NodeView;
use wasmfleet_hub::cli::EmbeddedBrokerArg;
use wasmfleet_hub::cli::client::Client;
use wasmfleet_hub::model::quantity::parse_duration;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "wasmfleet-sim",
    version,
    about = "Simulated edge fleet against a real Wasmfleet hub"
)]
struct Cli {
    /// Simulated nodes.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Hollow nodes: this many nodes share each MQTT connection (no Last Will each) instead of
    /// one connection per node. The embedded broker grants 16 subscriptions and queues 64
    /// messages per session, so at most 16 against it.
    #[arg(long)]
    hollow: Option<usize>,
    /// A running hub's API (default: start one).
    #[arg(long, requires = "mqtt")]
    hub: Option<String>,
    /// That hub's broker, mqtt://HOST:PORT.
    #[arg(long, requires = "hub")]
    mqtt: Option<String>,
    /// The broker the hub started here runs: `rmqtt` inside it, or `mosquitto`, a process it
    /// starts (its memory and CPU are counted as the hub's).
    #[arg(long, value_enum, default_value = "rmqtt", conflicts_with = "hub")]
    embedded_broker: EmbeddedBrokerArg,
    /// The `wasmfleet` binary to start a hub with (default: next to this one).
    #[arg(long)]
    wasmfleet: Option<PathBuf>,
    /// Delay before each node acts on a desired state, e.g. `50ms`.
    #[arg(long, default_value = "0ms")]
    latency: String,
    /// Share of desired states each node loses, 0 to 1 (the hub re-sends to lagging nodes).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Give up waiting for convergence after this long.
    #[arg(long, default_value = "120s")]
    timeout: String,
    /// Seconds of idle traffic to measure after convergence.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
    /// Apply a new module of about this many KiB instead of the cached `hello`: nodes hold no
    /// module and fetch the artifact their desired state names, chunk by chunk.
    #[arg(long)]
    module_kib: Option<u64>,
    /// With `--module-kib`: how nodes ask for chunks. `fan-out` (the hub publishes each chunk
    /// once on the blob's topic for all nodes asking), `per-node` (one reply per node, as
    /// before fan-out), or `both` (per-node, then fan-out with another new module, and the
    /// ratio).
    #[arg(long, value_enum, default_value_t = fetch::BlobPath::FanOut)]
    blob_path: fetch::BlobPath,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if cli.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if !(0.0..=1.0).contains(&cli.loss) {
        bail!("--loss {} must be from 0 to 1", cli.loss);
    }
    let rmqtt = cli.hub.is_none() && cli.embedded_broker == EmbeddedBrokerArg::Rmqtt;
    if cli.hollow == Some(0) || (rmqtt && cli.hollow.is_some_and(|m| m > 16)) {
        bail!(
            "--hollow must be from 1 to 16 against the embedded broker (it grants 16 subscriptions and queues 64 messages per session)"
        );
    }
    if cli.module_kib.is_some() && cli.hollow.is_some_and(|m| m > 5) {
        bail!(
            "--hollow must be at most 5 with --module-kib: each fetching node needs two subscriptions, and the connection up to six for the chunks being fetched (16 per session)"
        );
    }
    if cli.module_kib == Some(0) {
        bail!("--module-kib must be at least 1");
    }
    let connections = cli.nodes.div_ceil(cli.hollow.unwrap_or(1));
    // One socket per connection here, and one in the broker (a hub raises its own limit the
    // same way; a hub started here inherits this one).
    let files = wasmfleet_hub::limits::raise_open_files();
    let wanted = connections as u64 + 256;
    if files < wanted {
        bail!(
            "{connections} connections need about {wanted} open files but the limit is {files}: raise the hard limit (ulimit -Hn, or LimitNOFILE) or use --hollow 16"
        );
    }
    if connections > 25_000 {
        bail!(
            "{connections} connections from 127.0.0.1 to one port exceed the ephemeral port range (about 28,000): use --hollow 16"
        );
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    let timeout = parse_duration(&cli.timeout).map_err(|e| anyhow::anyhow!("--timeout: {e}"))?;
    let latency = parse_duration(&cli.latency).map_err(|e| anyhow::anyhow!("--latency: {e}"))?;
    let dir = tempdir()?;
    let own = match &cli.hub {
        Some(_) => None,
        None => {
            let bin = match &cli.wasmfleet {
                Some(b) => b.clone(),
                None => std::env::current_exe()?.with_file_name("wasmfleet"),
            };
            if !bin.exists() {
                bail!(
                    "{} not found: build it (cargo build -p wasmfleet-hub) or pass --wasmfleet PATH",
                    bin.display()
                );
            }
            Some(hub::OwnHub::start(&bin, &dir, cli.embedded_broker)?)
        }
    };
    let (url, host, port) = match (&own, &cli.hub, &cli.mqtt) {
        (Some(h), _, _) => (h.url.clone(), h.mqtt.0.clone(), h.mqtt.1),
        (None, Some(url), Some(mqtt)) => {
            let b: BrokerUrl = mqtt.parse().context("--mqtt")?;
            (url.clone(), b.host, b.port)
        }
        _ => bail!("--hub needs --mqtt"),
    };
    hub::wait_healthy(&url, Duration::from_secs(30)).await?;
    let pid = own.as_ref().map(hub::OwnHub::pid);
    let shape = fleet::Shape {
        nodes: cli.nodes,
        hollow: cli.hollow,
        latency,
        loss: cli.loss,
        fetch: cli.module_kib.is_some(),
    };
    println!(
        "wasmfleet-sim: {} nodes on {}, hub {url} ({})",
        cli.nodes,
        match cli.hollow {
            None => "their own MQTT connections".to_string(),
            Some(m) => format!(
                "{} shared MQTT connections (hollow, {m} per connection)",
                cli.nodes.div_ceil(m)
            ),
        },
        if own.is_some() {
            "started by the simulator"
        } else {
            "already running"
        }
    );
    let client = Client::new(&url, Duration::from_secs(60));
    let idle_rss = pid.map(hub::Rss::of);

    // Connect the fleet and wait until the hub sees every node Ready.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let (record, tasks) = fleet::start(&host, port, shape, stop);
    let deadline = started + timeout;
    let mut progress = started;
    loop {
        let nodes: Vec<NodeView> = client.get("/v1/nodes").await?;
        let is_ready = |n: &&NodeView| n.name.starts_with("sim-") && n.status == "Ready";
        let ready = nodes.iter().filter(is_ready).count();
        if ready >= cli.nodes {
            break;
        }
        // A large fleet takes a while: say how far it got every ten seconds.
        if progress.elapsed() >= PROGRESS_EVERY {
            progress = Instant::now();
            println!(
                "connecting: {ready} of {} nodes Ready after {:.0} s",
                cli.nodes,
                started.elapsed().as_secs_f64()
            );
        }
        if Instant::now() >= deadline {
            let ready_names: HashSet<&str> = nodes
                .iter()
                .filter(is_ready)
                .map(|n| n.name.as_str())
                .collect();
            let missing: Vec<usize> = (0..cli.nodes)
                .filter(|i| !ready_names.contains(fleet::name(*i).as_str()))
                .collect();
            // What the sessions of their connections did (one line per connection).
            let mut seen = HashSet::new();
            for i in &missing {
                if seen.insert(i / record.per_link) && seen.len() <= MISSING_NAMED {
                    eprintln!("wasmfleet-sim: {}", record.link_of(*i));
                }
            }
            let missing: Vec<String> = missing
                .into_iter()
                .take(MISSING_NAMED)
                .map(fleet::name)
                .collect();
            bail!(
                "only {ready} of {} nodes Ready after {:?}; not Ready: {}{}; the hub's log: {}",
                cli.nodes,
                timeout,
                missing.join(" "),
                if cli.nodes - ready > MISSING_NAMED {
                    " …"
                } else {
                    ""
                },
                hub_log(own.as_ref()),
            );
        }
        tokio::time::sleep(ready_poll(cli.nodes)).await;
    }
    println!(
        "connect: {} nodes Ready in {:.2} s",
        cli.nodes,
        started.elapsed().as_secs_f64()
    );
    // Let the connect storm's statuses settle before measuring memory and the apply.
    tokio::time::sleep(Duration::from_secs(2)).await;
    if let (Some(pid), Some(idle)) = (pid, idle_rss) {
        let full = hub::Rss::of(pid);
        let per_node =
            |full: u64, idle: u64| full.saturating_sub(idle) as f64 / 1024.0 / cli.nodes as f64;
        let parts = if full.children == 0 {
            "embedded broker included".to_string()
        } else {
            format!(
                "the hub {:.1} KiB, the broker it runs {:.1} KiB",
                per_node(full.own, idle.own),
                per_node(full.children, idle.children)
            )
        };
        println!(
            "hub memory: RSS {:.1} MiB with no nodes, {:.1} MiB with {}: {:.1} KiB per node ({parts})",
            mib(idle.total()),
            mib(full.total()),
            cli.nodes,
            per_node(full.total(), idle.total()),
        );
    }

    let bench = apply::Bench {
        client: &client,
        record: &record,
        nodes: cli.nodes,
        pid,
        timeout,
        hub_log: hub_log(own.as_ref()),
    };
    let mut deployments = Vec::new();
    let total = match cli.module_kib {
        // An every-node deployment of a module every node holds.
        None => {
            let deployment = format!("sim-probe-{}", std::process::id());
            let module = wasmfleet_hub::cli::demo::write_example_module(&dir)?;
            deployments.push(deployment.clone());
            bench.apply(&dir, &deployment, &module, "1Mi").await?
        }
        Some(kib) => {
            let (observer, _observing) = fetch::Observer::start(&host, port).await?;
            let mut phases = Vec::new();
            for &fan_out in cli.blob_path.phases() {
                let path = fetch::path_name(fan_out);
                let deployment = format!("sim-fetch-{}-{path}", std::process::id());
                let (module, memory) = fetch::write_module(&dir, &deployment, kib)?;
                deployments.push(deployment.clone());
                record.fan_out.store(fan_out, Ordering::Relaxed);
                println!("apply: a new {kib} KiB module, fetched {path}");
                let before = fetch::counters(&record, &observer);
                let total = bench.apply(&dir, &deployment, &module, &memory).await?;
                // Publications still on their way to the observer.
                tokio::time::sleep(Duration::from_millis(500)).await;
                let phase = fetch::Phase::between(
                    fan_out,
                    total,
                    before,
                    fetch::counters(&record, &observer),
                );
                let artifact = record.blobs.artifact_bytes.load(Ordering::Relaxed);
                let chunks = artifact.div_ceil(u64::from(wasmfleet_proto::MAX_BLOB_CHUNK));
                phase.print(cli.nodes, artifact, chunks);
                phases.push(phase);
            }
            if let [per_node, fan_out] = &phases[..] {
                fetch::compare(per_node, fan_out);
            }
            phases.last().map_or(Duration::ZERO, |p| p.total)
        }
    };
    let n = cli.nodes as f64;
    if cli.idle_secs > 0 {
        let (i0, o0) = (
            record.bytes_in.load(Ordering::Relaxed),
            record.bytes_out.load(Ordering::Relaxed),
        );
        tokio::time::sleep(Duration::from_secs(cli.idle_secs)).await;
        let bits = ((record.bytes_in.load(Ordering::Relaxed) - i0)
            + (record.bytes_out.load(Ordering::Relaxed) - o0)) as f64
            * 8.0;
        println!(
            "idle control traffic per node: {:.1} bit/s over {} s (heartbeats every {} s)",
            bits / n / cli.idle_secs as f64,
            cli.idle_secs,
            fleet::HEARTBEAT.as_secs()
        );
    }
    for deployment in &deployments {
        let path = wasmfleet_hub::cli::client::path(&["v1", "deployments", deployment]);
        let _ = client.delete(&path).await;
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), tasks.join_all()).await;
    println!(
        "converged {} nodes in {:.3} s",
        cli.nodes,
        total.as_secs_f64()
    );
    drop(own);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Nodes a failed connect names (the rest are counted).
const MISSING_NAMED: usize = 20;

/// Where the log of the hub under test is (kept when a run fails).
fn hub_log(own: Option<&hub::OwnHub>) -> String {
    own.map_or("(not ours)".into(), |h| h.log.display().to_string())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A fresh temporary directory (removed at the end of a run).
fn tempdir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("wasmfleet-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// How often a connect that has not finished reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// How long to wait between listings of the hub's nodes while the fleet connects: 250 ms per
/// 10,000 nodes. A listing of 100,000 nodes is 40 MB of JSON and two seconds of the hub's CPU;
/// polled every 250 ms, the simulator's own measuring took a core of the hub's two.
fn ready_poll(nodes: usize) -> Duration {
    Duration::from_millis(250) * u32::try_from(nodes.div_ceil(10_000).max(1)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_slow_down_with_the_fleet() {
        assert_eq!(ready_poll(300), Duration::from_millis(250));
        assert_eq!(ready_poll(10_000), Duration::from_millis(250));
        assert_eq!(ready_poll(100_000), Duration::from_millis(2_500));
    }
}
