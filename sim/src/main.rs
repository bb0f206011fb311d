//! `wasmfleet-sim --nodes N`: a fleet of simulated agents against a real hub, to measure how
//! fast a deployment converges and what each node costs the hub.
//!
//! By default it starts its own hub (`wasmfleet serve` next to this binary, embedded broker,
//! SQLite in a temporary directory); `--hub URL --mqtt URL` measures a running one. The nodes
//! run the real agent decision logic (`wasmfleet-node`) with simulated instances, each on its
//! own MQTT connection, or `--hollow K` of them over K connections. It applies an every-node
//! deployment of the `hello` example (every node already holds the module: the cached case)
//! and prints convergence per node and in total, hub memory and CPU, and traffic per node,
//! ending with `converged N nodes in X s`.

mod fleet;
mod hub;
mod node;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use wasmfleet_common::BrokerUrl;
use wasmfleet_hub::api::types::NodeView;
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
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if cli.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if !(0.0..=1.0).contains(&cli.loss) {
        bail!("--loss {} must be from 0 to 1", cli.loss);
    }
    if cli.hollow == Some(0) || (cli.hub.is_none() && cli.hollow.is_some_and(|m| m > 16)) {
        bail!(
            "--hollow must be from 1 to 16 against the embedded broker (it grants 16 subscriptions and queues 64 messages per session)"
        );
    }
    let connections = cli.nodes.div_ceil(cli.hollow.unwrap_or(1));
    let files = raise_file_limit();
    // The simulator's sockets, and as many again in a hub it starts (its embedded broker).
    let wanted = connections as u64 * if cli.hub.is_none() { 2 } else { 1 } + 256;
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

/// Raises the open-file soft limit to the hard limit; returns the limit now in force.
fn raise_file_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
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
            Some(hub::OwnHub::start(&bin, &dir)?)
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
    let idle_rss = pid.map(hub::rss_bytes);

    // Connect the fleet and wait until the hub sees every node Ready.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let (record, tasks) = fleet::start(&host, port, shape, stop);
    let deadline = started + timeout;
    loop {
        let nodes: Vec<NodeView> = client.get("/v1/nodes").await?;
        let ready = nodes
            .iter()
            .filter(|n| n.name.starts_with("sim-") && n.status == "Ready")
            .count();
        if ready >= cli.nodes {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "only {ready} of {} nodes Ready after {:?}",
                cli.nodes,
                timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "connect: {} nodes Ready in {:.2} s",
        cli.nodes,
        started.elapsed().as_secs_f64()
    );
    // Let the connect storm's statuses settle before measuring memory and the apply.
    tokio::time::sleep(Duration::from_secs(2)).await;
    if let (Some(pid), Some(idle)) = (pid, idle_rss) {
        let full = hub::rss_bytes(pid);
        println!(
            "hub memory: RSS {:.1} MiB with no nodes, {:.1} MiB with {}: {:.1} KiB per node (embedded broker included)",
            mib(idle),
            mib(full),
            cli.nodes,
            full.saturating_sub(idle) as f64 / 1024.0 / cli.nodes as f64
        );
    }

    // Apply an every-node deployment of a module every node holds.
    let deployment = format!("sim-probe-{}", std::process::id());
    record.deployment.set(deployment.clone()).ok();
    let module = wasmfleet_hub::cli::demo::write_example_module(&dir)?;
    let manifest = dir.join("probe.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: wasmfleet.dev/v1\nkind: Deployment\nmetadata: {{name: {deployment}}}\nspec:\n  module: {}\n  placement: every-node\n  nodeSelector: {{wasmfleet.dev/simulated: \"true\"}}\n  resources: {{memory: 1Mi}}\n",
            module.display()
        ),
    )?;
    // Upload first (not timed: the module is cached on the nodes, and in the hub after this).
    let doc = &wasmfleet_hub::model::manifest::load(&manifest)?[0];
    let (bytes, spec) = wasmfleet_hub::cli::apply::prepare(doc)?;
    let blob = wasmfleet_hub::cli::client::path(&["v1", "blobs", &spec.module]);
    if !client.exists(&blob).await? {
        client.put_bytes(&blob, bytes.clone()).await?;
    }
    let (msgs_in0, bytes_in0) = (
        record.msgs_in.load(Ordering::Relaxed),
        record.bytes_in.load(Ordering::Relaxed),
    );
    let (msgs_out0, bytes_out0) = (
        record.msgs_out.load(Ordering::Relaxed),
        record.bytes_out.load(Ordering::Relaxed),
    );
    let cpu0 = pid.map(hub::cpu_time);
    let applied_ms = record.origin.elapsed().as_millis() as u64;
    let t0 = Instant::now();
    wasmfleet_hub::cli::apply::submit(&client, &deployment, bytes, spec).await?;
    let total = loop {
        let done = record.convergence_ms(applied_ms);
        if done.len() >= cli.nodes {
            break t0.elapsed();
        }
        if Instant::now() >= deadline.max(t0 + timeout) {
            bail!(
                "only {} of {} nodes ran {deployment} after {:?}; the hub's log: {}",
                done.len(),
                cli.nodes,
                timeout,
                own.as_ref()
                    .map_or("(not ours)".into(), |h| h.log.display().to_string())
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let mut times = record.convergence_ms(applied_ms);
    times.sort_unstable();
    let pct = |p: f64| times[((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1];
    println!(
        "convergence per node: p50 {:.3} s, p99 {:.3} s, max {:.3} s",
        pct(0.50) as f64 / 1e3,
        pct(0.99) as f64 / 1e3,
        pct(1.0) as f64 / 1e3
    );
    if let (Some(pid), Some(cpu0)) = (pid, cpu0) {
        let used = hub::cpu_time(pid).saturating_sub(cpu0);
        println!(
            "hub CPU during convergence: {:.2} s ({:.0}% of one core)",
            used.as_secs_f64(),
            100.0 * used.as_secs_f64() / total.as_secs_f64().max(1e-3)
        );
    }
    let n = cli.nodes as f64;
    let per = |a: &std::sync::atomic::AtomicU64, b: u64| (a.load(Ordering::Relaxed) - b) as f64 / n;
    println!(
        "traffic per node for the apply: {:.1} messages / {:.0} bytes to it, {:.1} / {:.0} from it",
        per(&record.msgs_in, msgs_in0),
        per(&record.bytes_in, bytes_in0),
        per(&record.msgs_out, msgs_out0),
        per(&record.bytes_out, bytes_out0)
    );
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
    let _ = client
        .delete(&wasmfleet_hub::cli::client::path(&[
            "v1",
            "deployments",
            &deployment,
        ]))
        .await;
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

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A fresh temporary directory (removed at the end of a run).
fn tempdir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("wasmfleet-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
