//! `wasmfleet demo`: the whole system on one machine in one command. Starts a hub (embedded
//! broker and SQLite), three `edge-agent` processes with simulated devices (`--devices sim`: a
//! BME280 on `i2c-1`, an LED on GPIO 17), deploys the `sensor` and `alarm` examples from their
//! manifests (built from `examples/` when `wasmfleet` was built, and embedded in it), shows
//! progress until both are Running on different nodes, then streams their logs (readings on
//! one node, the alarm switching the LED on another, through the broker) until Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

use super::client::{Client, with_query};
use super::{apply, get, interrupted, logs};
use crate::api::types::WorkloadView;
use crate::process::{rss_kib, sigterm};

/// An example embedded by the build script: its manifest (`examples/<name>/app.yaml`, which
/// names `./<name>.wasm`) and its module (empty if it could not be built).
#[derive(Debug, Clone, Copy)]
pub struct Example {
    /// Name of the example and of its deployment.
    pub name: &'static str,
    /// The manifest.
    pub manifest: &'static str,
    /// The module.
    pub module: &'static [u8],
}

macro_rules! example {
    ($name:literal) => {
        Example {
            name: $name,
            manifest: include_str!(concat!("../../../examples/", $name, "/app.yaml")),
            module: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".wasm")),
        }
    };
}

/// Every embedded example.
pub const EXAMPLES: &[Example] = &[
    example!("hello"),
    example!("sensor"),
    example!("alarm"),
    example!("counter"),
];

/// The deployments the demo applies, in order (the scheduler spreads them over the nodes).
const DEMO: [&str; 2] = ["sensor", "alarm"];

/// Writes example `name` (its `app.yaml` and `<name>.wasm`) into `dir/<name>/` and returns
/// the manifest's path.
pub fn write_example(dir: &Path, name: &str) -> Result<PathBuf> {
    let ex = EXAMPLES
        .iter()
        .find(|e| e.name == name)
        .with_context(|| format!("no embedded example named {name:?}"))?;
    if ex.module.is_empty() {
        bail!(
            "this wasmfleet was built without the {name} example (a guest target was missing); run `rustup toolchain install` and rebuild"
        );
    }
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join(format!("{name}.wasm")), ex.module)
        .with_context(|| format!("writing the {name} module to {}", dir.display()))?;
    let manifest = dir.join("app.yaml");
    std::fs::write(&manifest, ex.manifest)
        .with_context(|| format!("writing {}", manifest.display()))?;
    Ok(manifest)
}

/// Writes the `hello` example module into `dir` and returns its path.
pub fn write_example_module(dir: &Path) -> Result<PathBuf> {
    let manifest = write_example(dir, "hello")?;
    Ok(manifest.with_file_name("hello.wasm"))
}

/// Options of `wasmfleet demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Number of local agents (at least 2: the sensor and the alarm run on different nodes).
    #[arg(long, default_value_t = 3)]
    pub agents: u32,
    /// HTTP API address of the demo hub.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// MQTT address of the demo hub's embedded broker.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub mqtt: SocketAddr,
    /// Keep data here instead of a temporary directory.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Stop after this many seconds of logs instead of waiting for Ctrl-C.
    #[arg(long)]
    pub run_for: Option<u64>,
}

/// The `edge-agent` binary: next to this one (a build or install directory), else on `PATH`.
fn agent_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the wasmfleet binary")?;
    let beside = exe.with_file_name("edge-agent");
    if beside.is_file() {
        return Ok(beside);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("edge-agent"))
        .find(|p| p.is_file());
    on_path.ok_or_else(|| {
        anyhow::anyhow!(
            "edge-agent not found next to {} or on PATH: build it with `cargo build --release --workspace` or install it with `cargo install --path edge-agent`",
            exe.display()
        )
    })
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> Result<()> {
    let agent = agent_binary()?;
    let tmp;
    let data = match &args.data {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir().context("creating a temporary data directory")?;
            tmp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&data)
        .with_context(|| format!("creating the data directory {}", data.display()))?;
    if args.agents < 2 {
        bail!("--agents must be at least 2: the sensor and the alarm run on different nodes");
    }
    let manifests = DEMO
        .iter()
        .map(|name| write_example(&data, name))
        .collect::<Result<Vec<_>>>()?;
    let hub = crate::serve::start(crate::serve::Options {
        data: data.join("hub"),
        http: args.http,
        mqtt: args.mqtt,
        own_broker: crate::serve::OwnBroker::Rmqtt,
        broker: None,
        controller: crate::controller::Config::default(),
        log_retention: crate::store::Retention::default(),
    })
    .await?;
    let client = Client::new(
        &format!("http://{}", hub.http_addr),
        Duration::from_secs(30),
    );
    eprintln!(
        "hub: http://{}  mqtt: {}  data: {}",
        hub.http_addr,
        hub.broker,
        data.display()
    );

    let mut agents = Vec::new();
    for i in 1..=args.agents {
        let name = format!("demo-node-{i}");
        let log = std::fs::File::create(data.join(format!("{name}.log")))?;
        let child = tokio::process::Command::new(&agent)
            .args([
                "--mqtt",
                &hub.broker.to_string(),
                "--node",
                &name,
                "--label",
                "demo=true",
                "--devices",
                "sim",
            ])
            .arg("--data")
            .arg(data.join(&name))
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", agent.display()))?;
        agents.push(child);
    }
    let result = drive(&client, &args, &manifests, &agents).await;
    eprintln!("\nstopping agents and hub ...");
    for a in &agents {
        sigterm(a);
    }
    for mut a in agents {
        let _ = tokio::time::timeout(Duration::from_secs(5), a.wait()).await;
    }
    hub.shutdown().await;
    result
}

async fn drive(
    client: &Client,
    args: &DemoArgs,
    manifests: &[PathBuf],
    agents: &[tokio::process::Child],
) -> Result<()> {
    wait_for_nodes(client, args.agents).await?;
    let started = Instant::now();
    for manifest in manifests {
        for applied in apply::apply_file(client, manifest).await? {
            eprintln!("deployment.wasmfleet.dev/{} applied", applied.name);
        }
    }
    wait_running(client, &DEMO).await?;
    let elapsed = started.elapsed();
    eprintln!(
        "sensor and alarm Running {:.2}s after apply\n",
        elapsed.as_secs_f64()
    );
    print!(
        "{}",
        get::get(client, get::Kind::Node, None, get::Output::Wide).await?
    );
    println!();
    print!(
        "{}",
        get::get(client, get::Kind::Workload, None, get::Output::Table).await?
    );
    println!(
        "\nfigures: apply_to_running_ms={} hub_rss_kib={} agent_rss_kib={}",
        elapsed.as_millis(),
        rss_kib(std::process::id()).unwrap_or(0),
        agents
            .iter()
            .filter_map(|a| a.id().and_then(rss_kib))
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .join(","),
    );
    println!(
        "\nthe sensor publishes readings; the alarm on another node switches GPIO 17 when one crosses 25 C (Ctrl-C to stop):"
    );
    let stop = async {
        match args.run_for {
            Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
            None => interrupted().await,
        }
    };
    // Both deployments' logs, interleaved, until `stop`.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let text = logs::LogFormat::Text;
    let both = async {
        tokio::try_join!(
            logs::logs(client, DEMO[0], 5, true, text, stopped(stop_rx.clone())),
            logs::logs(client, DEMO[1], 5, true, text, stopped(stop_rx.clone())),
        )
    };
    tokio::pin!(both);
    tokio::select! {
        done = &mut both => { done?; }
        () = stop => {
            let _ = stop_tx.send(true);
            both.await?;
        }
    }
    Ok(())
}

async fn wait_for_nodes(client: &Client, count: u32) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let nodes: Vec<crate::api::types::NodeView> = client.get("/v1/nodes").await?;
        if nodes.iter().filter(|n| n.status == "Ready").count() >= count as usize {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {count} agents joined within 30s; see the demo-node-*.log files",
                nodes.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_running(client: &Client, deployments: &[&str]) -> Result<Vec<WorkloadView>> {
    let bar = ProgressBar::new(deployments.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos}/{len} Running {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut wls = Vec::new();
        for d in deployments {
            let mine: Vec<WorkloadView> = client
                .get(&with_query("/v1/workloads", &[("deployment", d)]))
                .await?;
            wls.extend(mine);
        }
        let running = wls.iter().filter(|w| w.phase == "Running").count();
        bar.set_position(running as u64);
        let waiting: Vec<String> = wls
            .iter()
            .filter(|w| w.phase != "Running")
            .map(|w| format!("{}: {} {}", w.name, w.phase, w.message))
            .collect();
        bar.set_message(waiting.join("; "));
        if running == deployments.len() && wls.len() == deployments.len() {
            bar.finish_and_clear();
            return Ok(wls);
        }
        if let Some(failed) = wls.iter().find(|w| w.phase == "Failed") {
            bar.abandon();
            bail!("workload {} failed: {}", failed.name, failed.message);
        }
        if Instant::now() > deadline {
            bar.abandon();
            bail!("not Running after 120s: {}", waiting.join("; "));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
