//! `wasmfleet demo`: the whole system on one machine in one command. Starts a hub (embedded
//! broker and SQLite), three `edge-agent` processes, deploys the example module (built from
//! `examples/hello` when `wasmfleet` was built, and embedded in it), shows progress until
//! every replica is Running, then streams its log lines until Ctrl-C and stops everything.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

use super::client::{Client, with_query};
use super::{apply, get, interrupted, logs};
use crate::api::types::WorkloadView;
use crate::model::deployment::RestartPolicyName;

/// `examples/hello` for `wasm32-wasip1`, embedded by the build script (empty if the target was
/// missing when `wasmfleet` was built).
pub const EXAMPLE_MODULE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hello.wasm"));

/// Options of `wasmfleet demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Number of local agents.
    #[arg(long, default_value_t = 3)]
    pub agents: u32,
    /// Replicas of the example module.
    #[arg(long, default_value_t = 3)]
    pub replicas: u32,
    /// Use this module instead of building examples/hello.
    #[arg(long)]
    pub module: Option<PathBuf>,
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

/// Writes the embedded example module into `dir` and returns its path.
pub fn write_example_module(dir: &Path) -> Result<PathBuf> {
    if EXAMPLE_MODULE.is_empty() {
        bail!(
            "this wasmfleet was built without the example module (the wasm32-wasip1 target was missing); pass --module FILE.wasm"
        );
    }
    let path = dir.join("hello.wasm");
    std::fs::write(&path, EXAMPLE_MODULE)
        .with_context(|| format!("writing the example module to {}", path.display()))?;
    Ok(path)
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

/// Sends SIGTERM so agents announce themselves offline and stop their instances cleanly.
fn terminate(child: &tokio::process::Child) {
    if let Some(pid) = child.id() {
        // SAFETY: plain syscall on a pid we spawned and still own.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
}

/// Resident set size of a process in KiB, from /proc.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
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
    let module = match &args.module {
        Some(m) => m.clone(),
        None => write_example_module(&data)?,
    };
    let hub = crate::serve::start(crate::serve::Options {
        data: data.join("hub"),
        http: args.http,
        mqtt: args.mqtt,
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
    let result = drive(&client, &args, &module, &agents).await;
    eprintln!("\nstopping agents and hub ...");
    for a in &agents {
        terminate(a);
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
    module: &Path,
    agents: &[tokio::process::Child],
) -> Result<()> {
    wait_for_nodes(client, args.agents).await?;
    let env = ["GREETING=hello".to_string()];
    let run_args = ["--interval".to_string(), "1s".to_string()];
    let started = Instant::now();
    let applied = apply::run(
        client,
        apply::RunArgs {
            name: "hello",
            module,
            replicas: args.replicas,
            env: &env,
            memory: "16Mi",
            cpu: None,
            max_run_time: None,
            restart: RestartPolicyName::Always,
            args: &run_args,
        },
    )
    .await?;
    eprintln!("deployment.wasmfleet.dev/{} applied", applied.name);
    let converged = wait_running(client, args.replicas).await?;
    let elapsed = started.elapsed();
    eprintln!(
        "all {} replicas Running {:.2}s after apply\n",
        args.replicas,
        elapsed.as_secs_f64()
    );
    print!(
        "{}",
        get::get(client, get::Kind::Node, None, get::Output::Table).await?
    );
    println!();
    print!(
        "{}",
        get::get(client, get::Kind::Workload, None, get::Output::Table).await?
    );
    let _ = converged;
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
    println!("\nlogs of deployment hello (Ctrl-C to stop):");
    let stop = async {
        match args.run_for {
            Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
            None => interrupted().await,
        }
    };
    logs::logs(client, "hello", 20, true, logs::LogFormat::Text, stop).await
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

async fn wait_running(client: &Client, replicas: u32) -> Result<Vec<WorkloadView>> {
    let bar = ProgressBar::new(u64::from(replicas));
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos}/{len} Running {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let wls: Vec<WorkloadView> = client
            .get(&with_query("/v1/workloads", &[("deployment", "hello")]))
            .await?;
        let running = wls.iter().filter(|w| w.phase == "Running").count() as u64;
        bar.set_position(running);
        let waiting: Vec<String> = wls
            .iter()
            .filter(|w| w.phase != "Running")
            .map(|w| format!("{}: {} {}", w.name, w.phase, w.message))
            .collect();
        bar.set_message(waiting.join("; "));
        if running == u64::from(replicas) {
            bar.finish_and_clear();
            return Ok(wls);
        }
        if let Some(failed) = wls.iter().find(|w| w.phase == "Failed") {
            bar.abandon();
            bail!("workload {} failed: {}", failed.name, failed.message);
        }
        if Instant::now() > deadline {
            bar.abandon();
            bail!("replicas not Running after 120s: {}", waiting.join("; "));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
