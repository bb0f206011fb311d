//! Message types. Each is carried in one frame (see [`crate::frame`]) on one topic (see
//! [`crate::topic`]).
//!
//! Field order is wire order (postcard is positional): append new fields only behind a new
//! [`crate::WIRE_VERSION`], never reorder.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::Digest;

/// Marker for types that travel as frames. Sealed: only this crate defines wire messages.
pub trait Message: Serialize + for<'de> Deserialize<'de> + sealed::Sealed {}

mod sealed {
    pub trait Sealed {}
}

macro_rules! messages {
    ($($t:ty),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl Message for $t {}
    )*};
}
messages!(
    DesiredState,
    NodeStatus,
    Presence,
    BlobRequest,
    BlobReply,
    LogBatch,
    Heartbeat,
    crate::link::Downlink,
    crate::link::Uplink,
);

/// The complete desired state of one node: hub → node on `wf/v1/n/{node}/desired`, QoS 1,
/// retained. Level-triggered: a node converges to the latest one it holds, whatever it missed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DesiredState {
    /// Identity of the hub's fleet store, chosen at random when the store was created.
    /// Generations count within one fleet: a hub restored from an empty store starts a new
    /// fleet, whose generation 1 must not be mistaken for a stale message.
    pub fleet: u64,
    /// Increases every time the hub changes this node's workloads.
    pub generation: u64,
    /// Every workload the node should run, sorted by name. Absent means stopped.
    pub workloads: Vec<WorkloadSpec>,
}

impl DesiredState {
    /// Whether a node holding `current` should act on `self`: a newer generation of the same
    /// fleet, or any state of another fleet (the hub was rebuilt). An older or equal
    /// generation of the same fleet is stale (a retained message overtaken by a newer one, a
    /// duplicate) and is ignored; the hub notices from the node's status and moves on.
    pub fn supersedes(&self, current: &DesiredState) -> bool {
        self.fleet != current.fleet || self.generation > current.generation
    }
}

/// One workload instance on one node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// Unique on the node: `{deployment}-{ordinal}`.
    pub name: String,
    /// The deployment this workload belongs to.
    pub deployment: String,
    /// The deployment's template revision this spec was derived from. It changes only when
    /// what runs changes (module, args, env, limits, restart policy), not on scaling.
    pub revision: u64,
    /// The module to run, by content address.
    pub module: ModuleRef,
    /// Arguments after `argv[0]` (which is the deployment name).
    pub args: Vec<String>,
    /// Environment variables, in order.
    pub env: Vec<EnvVar>,
    /// Resource limits the agent enforces.
    pub limits: Limits,
    /// What the agent does when the instance exits.
    pub restart: RestartPolicy,
    /// Which code the node runs: the hub's precompiled artifact for the node's engine, or the
    /// source module compiled on the node.
    pub code: Code,
    /// Application namespace (`metadata.namespace`): the module's topics live under
    /// `wf/v1/app/{namespace}/`.
    pub namespace: String,
    /// `spec.config`, sorted by key: what the module reads with `config_get`.
    pub config: Vec<ConfigEntry>,
    /// What the module may touch beyond its own memory (`spec.capabilities`).
    pub capabilities: Capabilities,
}

/// One `spec.config` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConfigEntry {
    /// Key.
    pub key: String,
    /// Value, as text.
    pub value: String,
}

/// The host capabilities a workload is granted (`spec.capabilities`). The agent links only
/// the host functions of granted capabilities and checks every bus, pin and topic against
/// these lists. Empty lists grant nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Capabilities {
    /// I2C buses by name, e.g. `i2c-1`.
    pub i2c: Vec<String>,
    /// SPI devices by name, e.g. `spidev0.0`.
    pub spi: Vec<String>,
    /// GPIO pins by number.
    pub gpio: Vec<u32>,
    /// Topic filters (relative to the namespace) the module may publish to.
    pub publish: Vec<String>,
    /// Topic filters (relative to the namespace) the module may subscribe within.
    pub subscribe: Vec<String>,
    /// Bytes of persistent key-value store (keys plus values); 0: no store.
    pub kv_bytes: u64,
}

impl Capabilities {
    /// The node devices these capabilities need, in the names nodes announce them by
    /// ([`Hello::devices`]): `i2c-1`, `spidev0.0`, `gpio:17`.
    pub fn devices(&self) -> Vec<String> {
        let mut out: Vec<String> = self.i2c.iter().chain(&self.spi).cloned().collect();
        out.extend(self.gpio.iter().map(|p| alloc::format!("gpio:{p}")));
        out
    }
}

/// The code a node runs for a workload. The hub compiles each module once per engine profile
/// ([`EngineProfile`]) and names the artifact here, so nodes carry no compiler and a fleet
/// does not compile the same module once per device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Code {
    /// A precompiled artifact for the node's engine profile, by content address. The node
    /// fetches only this blob, not the source module, and trusts it because its digest is
    /// named in the desired state it received from its hub.
    Precompiled(ModuleRef),
    /// The hub is compiling the module for the node's profile; a newer desired state will name
    /// the artifact. The node waits (Pending).
    Compiling,
    /// The hub cannot compile for the node's profile (another wasmtime version or engine
    /// settings, or an architecture the hub has no backend for): a node with a compiler
    /// compiles [`WorkloadSpec::module`] itself; one without reports the workload Failed.
    Source,
}

/// A module by content address and size (the size lets agents check free space and progress).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModuleRef {
    /// SHA-256 of the module bytes.
    pub digest: Digest,
    /// Length of the module in bytes.
    pub size: u64,
}

/// One environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Variable value.
    pub value: String,
}

/// Resource limits for one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Limits {
    /// Ceiling on all linear memories and tables of the instance together, in bytes.
    pub memory_bytes: u64,
    /// Share of one core in millicores (`cpu: 200m` is 200): the instance is throttled to it
    /// over a short window. `None`: unthrottled (it still yields to its neighbours).
    pub cpu_millis: Option<u32>,
    /// Longest a run may last, in milliseconds, before the agent stops it as Failed.
    pub max_run_ms: Option<u64>,
}

/// Restart behaviour, as a Kubernetes pod's `restartPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum RestartPolicy {
    /// Restart on every exit, with exponential backoff.
    #[default]
    Always,
    /// Restart only after a failure (trap or non-zero exit), with exponential backoff.
    OnFailure,
    /// Never restart; the final phase stays Succeeded or Failed.
    Never,
}

/// What a node reports: node → hub on `wf/v1/n/{node}/status`, QoS 1, retained. Sent on every
/// change and periodically; retained so a restarted hub has every node's latest report at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeStatus {
    /// Fleet of the desired state the node has acted on ([`DesiredState::fleet`]).
    pub observed_fleet: u64,
    /// Generation of the desired state the node has acted on.
    pub observed_generation: u64,
    /// One entry per workload in that desired state, sorted by name.
    pub workloads: Vec<WorkloadStatus>,
}

/// Observed state of one workload instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadStatus {
    /// Workload name, as in [`WorkloadSpec::name`].
    pub name: String,
    /// Revision of the spec this status is for.
    pub revision: u64,
    /// Lifecycle phase.
    pub phase: Phase,
    /// How many times the agent restarted this instance.
    pub restarts: u32,
    /// Exit code of the last run, if it exited.
    pub exit_code: Option<i32>,
    /// Human-readable detail: why Pending or Failed (e.g. the trap message), empty otherwise.
    pub message: String,
}

/// Lifecycle phase of a workload instance (the values `kubectl get pods` users know).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Accepted, not running yet: fetching or compiling the module, or waiting to restart
    /// after a successful exit.
    Pending,
    /// The instance is executing.
    Running,
    /// The instance exited with code 0 and will not be restarted.
    Succeeded,
    /// The instance trapped, exited non-zero, or could not be started. Also reported while
    /// waiting to restart after such a failure (the message says so), like CrashLoopBackOff.
    Failed,
}

impl Phase {
    /// The name shown in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }
}

/// Node presence: node → hub on `wf/v1/n/{node}/online`, QoS 1, retained. The agent registers
/// [`Presence::Offline`] as its MQTT Last Will, so the broker announces a lost node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Presence {
    /// The node is connected.
    Online(Hello),
    /// The node disconnected (cleanly, or its Last Will fired).
    Offline,
}

/// A node's heartbeat: node → hub on `wf/v1/n/{node}/hb`, QoS 0, not retained, every
/// `interval_ms`. The Last Will covers a connection the broker sees close; heartbeats cover
/// what it does not: a half-open link, a frozen agent, a broker that lost the session. The hub
/// declares a node NotReady after [`MISSED_HEARTBEATS`] intervals without one.
///
/// Tiny on purpose (3 bytes for the default interval; 20 bytes plus the node name on the wire
/// as an MQTT 3.1.1 QoS 0 PUBLISH), because a fleet sends one per node every few seconds.
/// The interval travels in every beat, so the hub needs no configuration of its own and a
/// node may change it at any time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Milliseconds until the next heartbeat.
    pub interval_ms: u32,
}

/// Heartbeat intervals a node may miss before the hub declares it NotReady.
pub const MISSED_HEARTBEATS: u32 = 3;

/// What a node announces about itself when it connects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Hello {
    /// Agent software version, e.g. `0.1.0`.
    pub agent_version: String,
    /// Which runtime profile the node has.
    pub device_class: DeviceClass,
    /// Resources the scheduler may place workloads into.
    pub capacity: Capacity,
    /// Operator-given labels (`--label k=v`), sorted by key.
    pub labels: Vec<Label>,
    /// What the node's WebAssembly engine runs: decides which precompiled artifacts it loads.
    /// (Defaults to empty when read from a hub's store written before it existed.)
    #[serde(default)]
    pub engine: EngineProfile,
    /// Hardware the node offers to modules: I2C buses (`i2c-1`), SPI devices (`spidev0.0`)
    /// and GPIO pins (`gpio:17`). The scheduler places a workload only where every device
    /// its capabilities name exists.
    #[serde(default)]
    pub devices: Vec<String>,
}

/// A node's WebAssembly engine, as far as precompiled code is concerned. The hub compiles a
/// module once for every distinct profile in the fleet.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct EngineProfile {
    /// Target the engine runs code for: a Rust target triple such as
    /// `aarch64-unknown-linux-gnu`, or `pulley32` for the interpreter on microcontrollers.
    pub target: String,
    /// CPU features the node detected (e.g. `has_avx2`). Informational: the hub compiles for
    /// the target's baseline, so one artifact runs on every CPU of that architecture.
    pub cpu_features: Vec<String>,
    /// wasmtime version, e.g. `50.0.1`: artifacts load only into the version that made them.
    pub wasmtime: String,
    /// Fingerprint of the engine settings that decide whether an artifact loads (memory
    /// reservation, guards, epoch interruption, wasm features...). Hub and node compute it
    /// with the same code; equal fingerprints and versions mean the hub's artifact fits.
    pub settings: u64,
    /// Whether the node can compile source modules itself (the agent's `compiler` feature).
    pub compiler: bool,
}

/// Runtime profile of a node: decides how modules are compiled for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeviceClass {
    /// Linux gateway or device running `edge-agent` (wasmtime + Cranelift).
    Linux,
    /// Microcontroller running `firmware` (wasmtime + Pulley, `no_std`).
    Mcu,
}

/// Schedulable resources of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Capacity {
    /// Memory available to workloads, in bytes.
    pub memory_bytes: u64,
    /// Most workload instances the node accepts.
    pub max_workloads: u32,
}

/// A `key=value` label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Label {
    /// Label key.
    pub key: String,
    /// Label value.
    pub value: String,
}

/// Largest chunk a blob reply carries. Small enough for any broker's default packet limit and
/// for a weak link to retry cheaply.
pub const MAX_BLOB_CHUNK: u32 = 32 * 1024;

/// A node asks for part of a module, QoS 1, on one of two topics that name the asking node
/// (brokers can bind it to the client's identity with ACLs):
/// - `wf/v1/n/{node}/blob-want` ([`crate::topic::NodeTopic::BlobWant`]): the hub answers on
///   the fleet-wide topic of the chunk the range starts in, `wf/v1/blob/{digest}/{chunk}`
///   ([`crate::topic::blob_topic`]), once for every node asking for the same range meanwhile;
///   the node subscribes to that topic before it asks, and takes any chunk it still needs
///   from the topics it is subscribed to, also ones others asked for. A request out of the
///   blob's range gets no answer there.
/// - `wf/v1/n/{node}/blob-req` ([`crate::topic::NodeTopic::BlobRequest`]): the hub answers on
///   that node's own `blob` topic (microcontrollers through their gateway, older agents, and
///   agents whose fan-out asks went unanswered).
///
/// Fetchers ask for [`MAX_BLOB_CHUNK`]-aligned ranges, so nodes fetching one blob ask for the
/// same chunks and the hub can answer them together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRequest {
    /// Which blob.
    pub digest: Digest,
    /// First byte wanted.
    pub offset: u64,
    /// Bytes wanted; the hub sends at most [`MAX_BLOB_CHUNK`].
    pub len: u32,
}

/// The hub's answer to a [`BlobRequest`], QoS 1, not retained: on the asking node's
/// `wf/v1/n/{node}/blob` topic, or (asked on `blob-want`) on the chunk's fleet-wide topic
/// `wf/v1/blob/{digest}/{chunk}` for every node waiting for it. The same frame on both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobReply {
    /// Bytes `offset .. offset + data.len()` of a blob of `total` bytes.
    Chunk {
        /// Which blob.
        digest: Digest,
        /// Position of `data` in the blob.
        offset: u64,
        /// Size of the whole blob.
        total: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The hub does not hold this blob; on the node's own topic also: the request was out of
    /// range. (On the fleet-wide topic it is only ever the former: a request out of range must
    /// not stop the other nodes' transfers.)
    NotFound {
        /// Which blob.
        digest: Digest,
    },
}

/// Output lines of workloads: node → hub on `wf/v1/n/{node}/logs`, QoS 0 (best effort:
/// logs must never hold back desired state or status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LogBatch {
    /// Lines in the order they were written.
    pub lines: Vec<LogLine>,
}

/// One line a workload wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Workload name.
    pub workload: String,
    /// Which stream.
    pub stream: Stream,
    /// Node wall-clock time, milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// The line, without its newline; long lines are cut by the agent.
    pub line: String,
}

/// Output stream of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// Written by the agent about the workload, not by the workload (e.g. how many lines its
    /// log budget dropped), so a guest cannot forge it.
    Agent,
}

impl Stream {
    /// The name shown by `wasmfleet logs` and stored by the hub.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::Agent => "agent",
        }
    }
}

/// Longest log line the agent ships; longer lines are cut.
pub const MAX_LOG_LINE: usize = 4096;
