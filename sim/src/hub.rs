//! The hub under test: a `wasmfleet serve` the simulator starts (embedded broker, SQLite in a
//! temporary directory), or one already running. Its RSS and CPU time come from /proc, with
//! those of its children (the mosquitto it runs with `--embedded-broker mosquitto`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use wasmfleet_hub::api::types::NodeView;
use wasmfleet_hub::cli::EmbeddedBrokerArg;
use wasmfleet_hub::process::{child_pids, rss_kib};

/// A hub the simulator started; killed when dropped.
#[derive(Debug)]
pub struct OwnHub {
    child: Child,
    /// Its HTTP API.
    pub url: String,
    /// Its embedded broker.
    pub mqtt: (String, u16),
    /// Its log.
    pub log: PathBuf,
}

impl Drop for OwnHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OwnHub {
    /// Starts `wasmfleet serve` from `bin` with its data in `dir`, on free loopback ports,
    /// running `broker`.
    pub fn start(bin: &Path, dir: &Path, broker: EmbeddedBrokerArg) -> Result<OwnHub> {
        let broker = broker
            .to_possible_value()
            .expect("every --embedded-broker value has a name");
        let (http, mqtt) = (free_port()?, free_port()?);
        let log = dir.join("hub.log");
        let child = Command::new(bin)
            .arg("serve")
            .arg("--data")
            .arg(dir.join("hub"))
            .args(["--http", &format!("127.0.0.1:{http}")])
            .args(["--mqtt", &format!("127.0.0.1:{mqtt}")])
            .args(["--embedded-broker", broker.get_name()])
            // Nothing moves while the simulator connects thousands of nodes.
            .args(["--node-grace-secs", "600"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).context("creating the hub's log")?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(OwnHub {
            child,
            url: format!("http://127.0.0.1:{http}"),
            mqtt: ("127.0.0.1".into(), mqtt),
            log,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Waits until the hub at `url` answers.
pub async fn wait_healthy(url: &str, timeout: Duration) -> Result<()> {
    let client = wasmfleet_hub::cli::client::Client::new(url, Duration::from_secs(2));
    let deadline = Instant::now() + timeout;
    loop {
        if client.get::<Vec<NodeView>>("/v1/nodes").await.is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "the hub at {url} did not answer within {}s",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Resident memory of a hub, bytes: its own, and its children's (the mosquitto it runs).
#[derive(Debug, Clone, Copy)]
pub struct Rss {
    /// The hub process.
    pub own: u64,
    /// Its children together.
    pub children: u64,
}

impl Rss {
    /// Of `pid` and its children, now.
    pub fn of(pid: u32) -> Rss {
        let bytes = |p| rss_kib(p).unwrap_or(0) * 1024;
        Rss {
            own: bytes(pid),
            children: child_pids(pid).into_iter().map(bytes).sum(),
        }
    }

    /// Both together.
    pub fn total(self) -> u64 {
        self.own + self.children
    }
}

/// CPU time (user + system) `pid` and its children have used.
pub fn cpu_time(pid: u32) -> Duration {
    with_children(pid).map(own_cpu_time).sum()
}

fn with_children(pid: u32) -> impl Iterator<Item = u32> {
    std::iter::once(pid).chain(child_pids(pid))
}

fn own_cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat(5); here 0-based after ")": 11 and 12.
    let hz = 100; // USER_HZ on Linux
    Duration::from_millis((ticks(11) + ticks(12)) * 1000 / hz)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
