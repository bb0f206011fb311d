//! `--module-kib`: a module no node holds, fetched by every node through the hub.
//!
//! The simulator writes a new module of the asked size (a WASI command whose `_start` returns
//! at once, and a data segment of random bytes: new on every run), uploads it, and applies it
//! everywhere; the hub checks it and precompiles it for its own engine profile, which the
//! simulated nodes announce, so each node fetches that artifact (the digest its desired state
//! names), chunk by chunk, with the agent's own fetcher. Per phase it prints what the fetch
//! cost the hub's connection: chunk publications (seen by an observer subscribed to every blob
//! topic, and by the nodes on their own `blob` topics), the asks that reached it, and what the
//! nodes received.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::Rng;
use rumqttc::MqttOptions;
use tokio::sync::mpsc;
use wasmfleet_common::mqtt::{Backoff, Session, SessionEvent};
use wasmfleet_common::subscribe::Qos;
use wasmfleet_proto::topic::BLOB_PREFIX;

use crate::fleet::{Record, wire_bytes};

/// How nodes ask for chunks in one phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BlobPath {
    /// `blob-want`: one publication per chunk on the blob's topic for all nodes asking.
    FanOut,
    /// `blob-req`: one reply per node per chunk (agents before fan-out, microcontrollers).
    PerNode,
    /// Per node first, then fan-out (each with a module of its own), and their ratio.
    Both,
}

impl BlobPath {
    /// The phases to run: `true` for fan-out.
    pub fn phases(self) -> &'static [bool] {
        match self {
            BlobPath::FanOut => &[true],
            BlobPath::PerNode => &[false],
            BlobPath::Both => &[false, true],
        }
    }
}

/// `fan-out` or `per-node`.
pub fn path_name(fan_out: bool) -> &'static str {
    match fan_out {
        true => "fan-out",
        false => "per-node",
    }
}

/// Writes a new module of about `kib` KiB as `dir/{name}.wasm`; returns its path and the
/// memory its manifest must grant (its data is placed in its linear memory).
pub fn write_module(dir: &Path, name: &str, kib: u64) -> Result<(PathBuf, String)> {
    let size = usize::try_from(kib * 1024).context("--module-kib")?;
    let mut data = vec![0u8; size.saturating_sub(64).max(1)];
    rand::rng().fill(&mut data[..]);
    let pages = data.len().div_ceil(65536) as u64 + 1;
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, module(&data, pages))
        .with_context(|| format!("writing {}", path.display()))?;
    let memory = format!("{}Mi", (pages * 64).div_ceil(1024) + 1);
    Ok((path, memory))
}

/// A module that exports `_start: () -> ()` (it returns) and `memory` of `pages` pages,
/// initialised with `data`.
fn module(data: &[u8], pages: u64) -> Vec<u8> {
    fn leb(mut n: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                return out.push(byte);
            }
            out.push(byte | 0x80);
        }
    }
    fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
        out.push(id);
        leb(body.len() as u64, out);
        out.extend_from_slice(body);
    }
    let mut out = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[1, 0x60, 0, 0], &mut out); // type 0: () -> ()
    section(3, &[1, 0], &mut out); // function 0: type 0
    let mut memory = vec![1, 0]; // one memory, minimum only
    leb(pages, &mut memory);
    section(5, &memory, &mut out);
    let mut exports = vec![2, 6];
    exports.extend_from_slice(b"_start\0\0"); // function 0
    exports.push(6);
    exports.extend_from_slice(b"memory\x02\0"); // memory 0
    section(7, &exports, &mut out);
    section(10, &[1, 2, 0, 0x0b], &mut out); // body: no locals, end
    let mut segment = vec![1, 0, 0x41, 0, 0x0b]; // active, memory 0, at i32.const 0
    leb(data.len() as u64, &mut segment);
    segment.extend_from_slice(data);
    section(11, &segment, &mut out);
    out
}

/// Publications the hub makes on blob topics, counted by a connection of its own.
#[derive(Debug, Default)]
pub struct Observer {
    /// Publications on `wf/v1/blob/+/+`.
    pub publications: AtomicU64,
    /// Their bytes on the wire.
    pub bytes: AtomicU64,
}

impl Observer {
    /// Connects to the broker, subscribes to every chunk topic and counts what arrives until
    /// the returned session is dropped.
    pub async fn start(host: &str, port: u16) -> Result<(Arc<Observer>, Session)> {
        let mut opts = MqttOptions::new(format!("sim-observer-{}", std::process::id()), host, port);
        opts.set_clean_session(true)
            .set_max_packet_size(300 * 1024, 300 * 1024);
        let filter = format!("{BLOB_PREFIX}/+/+");
        let (tx, mut rx) = mpsc::channel(256);
        let backoff = Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        let session = Session::spawn(
            opts,
            64,
            vec![(filter.clone(), Qos::AtLeastOnce)],
            backoff,
            tx,
        );
        let observer = Arc::new(Observer::default());
        let counts = observer.clone();
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                if let SessionEvent::Message { topic, payload } = event {
                    counts.publications.fetch_add(1, Ordering::Relaxed);
                    let bytes = wire_bytes(&topic, payload.len());
                    counts.bytes.fetch_add(bytes, Ordering::Relaxed);
                }
            }
        });
        let t0 = Instant::now();
        while !session.granted(&filter) {
            if t0.elapsed() > Duration::from_secs(10) {
                bail!("the observer's subscription to {filter} was not granted");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok((observer, session))
    }
}

/// What one fetch phase cost, from counters taken before and after it.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    /// Fan-out or per node.
    pub fan_out: bool,
    /// Apply to all nodes Running.
    pub total: Duration,
    /// Chunk publications by the hub (blob topics plus nodes' own topics) and their bytes.
    pub publications: u64,
    /// See `publications`.
    pub bytes: u64,
    /// Asks that reached the hub (both routes) and their bytes.
    pub asks: u64,
    /// See `asks`.
    pub ask_bytes: u64,
    /// Chunk messages the nodes' connections received, and their bytes.
    pub received: u64,
    /// See `received`.
    pub received_bytes: u64,
    /// Modules fetched and verified.
    pub fetched: u64,
}

/// Counters at one moment: the nodes' blob counters and the observer's.
pub fn counters(record: &Record, observer: &Observer) -> [u64; 10] {
    let b = record.blobs.snapshot();
    [
        b[0],
        b[1],
        b[2],
        b[3],
        b[4],
        b[5],
        b[6],
        b[7],
        observer.publications.load(Ordering::Relaxed),
        observer.bytes.load(Ordering::Relaxed),
    ]
}

impl Phase {
    /// The phase between counters `a` and `b` (from [`counters`]).
    pub fn between(fan_out: bool, total: Duration, a: [u64; 10], b: [u64; 10]) -> Phase {
        let d = |i: usize| b[i] - a[i];
        Phase {
            fan_out,
            total,
            publications: d(8) + d(3),
            bytes: d(9) + d(4),
            asks: d(0) + d(1),
            ask_bytes: d(2),
            received: d(5) + d(3),
            received_bytes: d(6) + d(4),
            fetched: d(7),
        }
    }

    /// `fan-out` or `per-node`.
    pub fn name(&self) -> &'static str {
        path_name(self.fan_out)
    }

    /// Prints the phase; `chunks` is how many chunks the module has.
    pub fn print(&self, nodes: usize, artifact: u64, chunks: u64) {
        let n = nodes as f64;
        println!(
            "fetch ({}): {} nodes fetched and verified a {:.1} KiB artifact ({chunks} chunks) and ran it in {:.3} s",
            self.name(),
            self.fetched,
            artifact as f64 / 1024.0,
            self.total.as_secs_f64()
        );
        println!(
            "  hub connection: {} chunk publications out ({:.2} MiB), {} asks in ({:.0} KiB): {:.2} asks per publication",
            self.publications,
            mib(self.bytes),
            self.asks,
            self.ask_bytes as f64 / 1024.0,
            self.asks as f64 / self.publications.max(1) as f64
        );
        println!(
            "  nodes received {} chunk messages ({:.2} MiB): {:.2} per node for {chunks} chunks; {:.1} chunk deliveries per hub publication",
            self.received,
            mib(self.received_bytes),
            self.received as f64 / n,
            self.received as f64 / self.publications.max(1) as f64
        );
    }
}

/// Prints how fan-out compares with per-node replies, measured in the same run.
pub fn compare(per_node: &Phase, fan_out: &Phase) {
    println!(
        "fan-out vs per-node: {:.1}x fewer chunk publications by the hub ({} vs {}), {:.1}x fewer bytes out of its connection ({:.2} vs {:.2} MiB), all Running in {:.3} s vs {:.3} s",
        per_node.publications as f64 / fan_out.publications.max(1) as f64,
        fan_out.publications,
        per_node.publications,
        per_node.bytes as f64 / fan_out.bytes.max(1) as f64,
        mib(fan_out.bytes),
        mib(per_node.bytes),
        fan_out.total.as_secs_f64(),
        per_node.total.as_secs_f64()
    );
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
