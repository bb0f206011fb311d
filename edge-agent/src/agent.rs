//! The agent loop: one task that owns all state and reacts to MQTT events, instance exits,
//! output lines and a periodic tick. Decisions come from [`wasmfleet_node::reconcile`] and
//! [`crate::blobs::Fetcher`]; this file only carries them out.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rumqttc::QoS;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::{AbortHandle, JoinError, JoinSet};
use wasmfleet_proto::topic::{
    NodeTopic, blob_chunk, node_topic, parse_app_topic, parse_blob_topic, parse_node_topic,
};
use wasmfleet_proto::{
    BlobReply, Capacity, Code, DesiredState, DeviceClass, Digest, Heartbeat, Hello, LogBatch,
    LogLine, MAX_FRAME_LEN, ModuleRef, NodeStatus, Presence, WorkloadSpec, decode, encode,
};

use crate::apps::AppBus;
use crate::blobs::{BlobStore, Fetcher, ReplyOutcome, Route};
use crate::config::Config;
use crate::link::{LinkEvent, MqttLink, mqtt};
use crate::runtime::{
    CodeKind, HAS_COMPILER, InstanceContext, Runtime, RuntimeError, STOP_GRACE, Services,
    StopSignal,
};
use crate::state;
use wasmfleet_node::admission::{self, NodeOffer};
use wasmfleet_node::reconcile::{self, Action, Actual, Exit, RunState, WorkloadActual};

/// Reconcile and blob-timeout period.
pub const TICK: Duration = Duration::from_millis(500);
/// How soon requests held for a chunk topic subscription are looked at again (the SUBACK is
/// not an event the loop sees).
const BLOB_HOLD_POLL: Duration = Duration::from_millis(5);
/// Log batching period.
pub const LOG_FLUSH: Duration = Duration::from_millis(200);
/// Lines that trigger an immediate log batch.
pub const LOG_BATCH_LINES: usize = 64;
/// Status is re-sent at least this often, changed or not.
pub const STATUS_REFRESH: Duration = Duration::from_secs(30);
/// Line bytes per published batch, well under `MAX_FRAME_LEN`.
const LOG_BATCH_BYTES: usize = MAX_FRAME_LEN / 2;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The data directory is unusable.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// wasmtime could not be set up.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A device of `--devices` could not be opened.
    #[error("--devices: {0}")]
    Devices(String),
}

/// A running instance: its task, and the signal that asks it to stop gracefully.
#[derive(Debug)]
struct Running {
    task: AbortHandle,
    stop: watch::Sender<bool>,
}

impl Running {
    /// Asks the instance to stop (an event module's `on_stop` runs), and aborts it if it has
    /// not ended in time: a handler running when the stop came has [`STOP_GRACE`] to return,
    /// then `on_stop` has as long again; a handler that spins is cut off.
    fn stop(self) {
        let _ = self.stop.send(true);
        let task = self.task;
        tokio::spawn(async move {
            tokio::time::sleep(STOP_GRACE * 2 + Duration::from_millis(250)).await;
            task.abort();
        });
    }
}

/// The agent: desired state, running instances, blob transfers and the hub link.
#[derive(Debug)]
pub struct Agent {
    config: Config,
    store: BlobStore,
    runtime: Runtime,
    desired: DesiredState,
    actual: Actual,
    fetcher: Fetcher,
    instances: HashMap<String, Running>,
    apps: AppBus,
    devices: Vec<String>,
    tasks: JoinSet<Exit>,
    log_tx: mpsc::Sender<LogLine>,
    log_rx: mpsc::Receiver<LogLine>,
    log_batch: Vec<LogLine>,
    log_tap: broadcast::Sender<LogLine>,
    status_tx: watch::Sender<NodeStatus>,
    last_sent: Option<(NodeStatus, Duration)>,
    link: Option<MqttLink>,
    connected: bool,
    /// This connection's announcement (`Online`, retained) is queued. A full request queue
    /// refuses it, and a node whose announcement never reaches the broker stays unknown to
    /// the hub for as long as it stays connected: it is tried again with every beat.
    announced: bool,
    started: Instant,
}

impl Agent {
    /// Opens the data directory (blobs, cache, persisted desired state). Does not connect.
    pub fn new(config: Config) -> Result<Agent, AgentError> {
        let dir = config.data_dir.clone();
        let io = |source| AgentError::DataDir {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let store = BlobStore::open(&dir).map_err(io)?;
        let apps = AppBus::default();
        let services = Services {
            devices: config.devices.build().map_err(AgentError::Devices)?,
            kv: crate::kv::KvStores::new(&dir.join("kv")),
            apps: apps.clone(),
        };
        let devices = services.devices.names();
        if !devices.is_empty() {
            tracing::info!(devices = %devices.join(" "), "devices offered to modules");
        }
        let runtime = Runtime::with_services(&dir.join("cache"), services)?;
        let desired = state::load_desired(&dir).unwrap_or_default();
        if !desired.workloads.is_empty() {
            tracing::info!(
                generation = desired.generation,
                workloads = desired.workloads.len(),
                "restored desired state from disk"
            );
        }
        let (log_tx, log_rx) = mpsc::channel(4096);
        Ok(Agent {
            fetcher: Fetcher::new(),
            config,
            store,
            runtime,
            desired,
            actual: Actual::default(),
            instances: HashMap::new(),
            apps,
            devices,
            tasks: JoinSet::new(),
            log_tx,
            log_rx,
            log_batch: Vec::new(),
            log_tap: broadcast::channel(1024).0,
            status_tx: watch::channel(NodeStatus::default()).0,
            last_sent: None,
            link: None,
            connected: false,
            announced: false,
            started: Instant::now(),
        })
    }

    /// The latest computed status (updated whenever it changes, connected or not).
    pub fn status_watch(&self) -> watch::Receiver<NodeStatus> {
        self.status_tx.subscribe()
    }

    /// Every workload output line, as shipped to the hub.
    pub fn log_tap(&self) -> broadcast::Receiver<LogLine> {
        self.log_tap.subscribe()
    }

    /// The desired state the agent acts on.
    pub fn desired(&self) -> &DesiredState {
        &self.desired
    }

    /// Runs until `shutdown` resolves, then publishes offline presence, stops every instance
    /// and disconnects. Starts persisted workloads at once, without waiting for the broker.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        let (ev_tx, mut ev_rx) = mpsc::channel(256);
        let opts = mqtt::options(
            &self.config.broker.host,
            self.config.broker.port,
            &self.config.node,
        );
        let link = MqttLink::start(opts, &self.config.node, ev_tx);
        self.apps.set_publisher(link.app_publisher());
        self.link = Some(link);
        // Attached microcontrollers: one bridge each, nodes of their own on the same broker.
        let (mcu_stop, mcu_stop_rx) = tokio::sync::watch::channel(false);
        let mut bridges = tokio::task::JoinSet::new();
        for mcu in &self.config.mcus {
            let broker = &self.config.broker;
            let run = crate::link::mcu::run(
                mcu.clone(),
                broker.host.clone(),
                broker.port,
                self.config.heartbeat,
                mcu_stop_rx.clone(),
            );
            bridges.spawn(run);
        }
        self.step();
        self.prune_disk();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut log_tick = tokio::time::interval(LOG_FLUSH);
        log_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Beats come from this loop, not a task of their own: an agent whose loop is stuck
        // stops beating, and the hub sees it NotReady.
        let mut beats = tokio::time::interval(self.config.heartbeat);
        beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        let apps = self.apps.clone();
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                () = apps.changed() => self.sync_app_filters(),
                Some(event) = ev_rx.recv() => self.on_link_event(event),
                Some(done) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => self.on_instance_end(done),
                Some(line) = self.log_rx.recv() => self.on_log(line),
                _ = tick.tick() => self.step(),
                _ = log_tick.tick() => self.flush_logs(),
                _ = beats.tick() => self.beat(),
                () = tokio::time::sleep(BLOB_HOLD_POLL), if self.fetcher.holding() => {
                    let now = self.now();
                    self.send_blob_requests(now);
                }
            }
        }
        // The bridges say their nodes go offline while the agent stops its own instances.
        let _ = mcu_stop.send(true);
        self.shutdown(&mut ev_rx).await;
        let _ = tokio::time::timeout(Duration::from_secs(3), bridges.join_all()).await;
    }

    /// Tells the hub this node is alive: QoS 0, a few bytes, only while connected. An
    /// announcement the link could not queue goes first.
    fn beat(&mut self) {
        self.announce();
        if let Some(link) = self.link.as_ref().filter(|_| self.connected) {
            let beat = Heartbeat {
                interval_ms: u32::try_from(self.config.heartbeat.as_millis()).unwrap_or(u32::MAX),
            };
            let topic = node_topic(&self.config.node, NodeTopic::Heartbeat);
            link.publish(topic, QoS::AtMostOnce, false, encode(&beat));
        }
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Reconciles, executes the actions, sends due blob requests and status.
    fn step(&mut self) {
        let now = self.now();
        let store = &self.store;
        let verdicts = admission::admit(&self.desired, &self.offer());
        let actions = reconcile::reconcile(
            &self.desired,
            &self.actual,
            &verdicts,
            &|d| store.has(d),
            now,
        );
        for action in actions {
            self.execute(action);
        }
        let wanted: HashSet<Digest> = verdicts
            .values()
            .filter_map(|v| v.blob())
            .map(|b| b.digest)
            .collect();
        self.fetcher.retain(|d| wanted.contains(d));
        self.send_blob_requests(now);
        self.publish_status(now, false);
    }

    fn execute(&mut self, action: Action) {
        let now = self.now();
        match action {
            Action::FetchBlob(module) => self.fetch(module),
            Action::Start(spec) => {
                let actual = WorkloadActual::started(spec.clone(), now);
                self.spawn(spec, actual);
            }
            Action::Restart(spec) => {
                let actual = match self.actual.workloads.get(&spec.name) {
                    Some(a) => a.restarted(spec.clone(), now),
                    None => WorkloadActual::started(spec.clone(), now),
                };
                tracing::info!(workload = %spec.name, restarts = actual.restarts, "restarting");
                self.spawn(spec, actual);
            }
            Action::Stop(name) => {
                if let Some(running) = self.instances.remove(&name) {
                    running.stop();
                    tracing::info!(workload = %name, "stopped");
                }
                self.actual.workloads.remove(&name);
            }
        }
    }

    fn fetch(&mut self, module: ModuleRef) {
        if self.fetcher.is_fetching(&module.digest) {
            return;
        }
        let have = self.store.part_len(&module.digest);
        if have >= module.size && module.size > 0 {
            // A download that completed but was not verified before a crash.
            match self.store.finish(&module.digest) {
                Ok(()) => return,
                Err(e) => {
                    // Start over: a part that cannot be finished must not stall the transfer.
                    tracing::warn!(error = %e, "discarding complete partial download");
                    self.store.discard_part(&module.digest);
                }
            }
        }
        let have = self.store.part_len(&module.digest);
        tracing::info!(digest = %module.digest.short(), size = module.size, resume_at = have, "fetching module");
        self.fetcher.want(module, have);
    }

    /// What this node offers, as announced.
    fn offer(&self) -> NodeOffer {
        NodeOffer {
            max_workloads: self.config.max_workloads,
            memory_bytes: self.config.memory_bytes,
            compiler: HAS_COMPILER,
        }
    }

    fn spawn(&mut self, spec: WorkloadSpec, actual: WorkloadActual) {
        let Some(blob) = admission::code_of(&spec, HAS_COMPILER).blob().copied() else {
            return; // not runnable here: admission said so and status reports why
        };
        let (stop_tx, stop) = StopSignal::new();
        let ctx = InstanceContext {
            node: self.config.node.clone(),
            code_path: self.store.path(&blob.digest),
            code_digest: blob.digest,
            code: match spec.code {
                Code::Precompiled(_) => CodeKind::Precompiled,
                _ => CodeKind::Source,
            },
            log_limits: self.config.log_limits,
            stop,
        };
        let run = self.runtime.run(spec.clone(), ctx, self.log_tx.clone());
        let task = self.tasks.spawn(run);
        tracing::info!(workload = %spec.name, code = %blob.digest.short(), "started");
        let running = Running {
            task,
            stop: stop_tx,
        };
        if let Some(old) = self.instances.insert(spec.name.clone(), running) {
            old.task.abort();
        }
        self.actual.workloads.insert(spec.name.clone(), actual);
    }

    fn on_instance_end(&mut self, done: Result<(tokio::task::Id, Exit), JoinError>) {
        let (id, exit) = match done {
            Ok(ok) => ok,
            Err(e) if e.is_cancelled() => return,
            Err(e) => (
                e.id(),
                Exit::failure(None, format!("instance task panicked: {e}")),
            ),
        };
        // An instance replaced or stopped meanwhile is no longer ours to report.
        let Some(name) = self
            .instances
            .iter()
            .find(|(_, r)| r.task.id() == id)
            .map(|(n, _)| n.clone())
        else {
            return;
        };
        self.instances.remove(&name);
        if exit.is_success() {
            tracing::info!(workload = %name, "exited with code 0");
        } else {
            tracing::warn!(workload = %name, code = ?exit.code, message = %exit.message, "instance failed");
        }
        let at = self.now();
        if let Some(a) = self.actual.workloads.get_mut(&name) {
            a.run = RunState::Exited { exit, at };
        }
        self.step();
    }

    fn on_link_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Connected => self.on_connected(),
            LinkEvent::Disconnected(error) => {
                if self.connected {
                    tracing::warn!(%error, "lost connection to the broker; running autonomously, reconnecting");
                } else {
                    tracing::debug!(%error, "broker unreachable; retrying");
                }
                self.connected = false;
                self.announced = false;
            }
            LinkEvent::Message { topic, payload } => match parse_node_topic(&topic) {
                Some((_, NodeTopic::Desired)) => self.handle_desired(&topic, &payload),
                Some((_, NodeTopic::Blob)) => self.handle_blob(&topic, &payload),
                None if parse_blob_topic(&topic).is_some() => self.handle_blob(&topic, &payload),
                _ if parse_app_topic(&topic).is_some() => {
                    self.apps.deliver(&topic, &payload);
                    let dropped = self.apps.take_dropped();
                    if dropped > 0 {
                        tracing::warn!(%topic, dropped, "application messages dropped: a module's event queue is full");
                    }
                }
                _ => tracing::debug!(%topic, "ignoring message on unexpected topic"),
            },
            LinkEvent::Closed => {}
        }
    }

    /// Every CONNACK starts a clean session: announce presence, send status (the session
    /// subscribes on its own and keeps the subscriptions granted).
    fn on_connected(&mut self) {
        tracing::info!(broker = %self.config.broker, "connected to the broker");
        self.connected = true;
        self.announced = false;
        // The announcement and a beat right away: the hub learns this node's interval now,
        // not one interval later.
        self.beat();
        self.fetcher.reset_outstanding();
        let now = self.now();
        self.send_blob_requests(now);
        self.publish_status(now, true);
    }

    /// Queues this node's announcement unless this connection already did: what it is, what
    /// it offers. Retained, so a hub (re)starting later reads it from the broker.
    fn announce(&mut self) {
        let Some(link) = self
            .link
            .as_ref()
            .filter(|_| self.connected && !self.announced)
        else {
            return;
        };
        let hello = Hello {
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            device_class: DeviceClass::Linux,
            capacity: Capacity {
                memory_bytes: self.config.memory_bytes,
                max_workloads: self.config.max_workloads,
            },
            labels: self.config.labels.clone(),
            engine: wasmfleet_common::engine::host_profile(HAS_COMPILER),
            devices: self.devices.clone(),
        };
        let topic = node_topic(&self.config.node, NodeTopic::Online);
        self.announced = link.publish(
            topic,
            QoS::AtLeastOnce,
            true,
            encode(&Presence::Online(hello)),
        );
        if !self.announced {
            tracing::warn!(
                "announcement not queued (the link's queue is full); retrying with the next beat"
            );
        }
    }

    /// Takes a desired-state payload. Undecodable input is logged and ignored: the last good
    /// state stays in force (and on disk). So is a stale one (an older or equal generation of
    /// the same fleet, e.g. a retained message overtaken by a newer one): the status keeps
    /// reporting the generation acted on, from which the hub sees where the node is.
    pub fn handle_desired(&mut self, topic: &str, payload: &[u8]) {
        let state = match decode::<DesiredState>(payload) {
            Ok(s) => s,
            Err(error) => {
                tracing::warn!(%topic, %error, kept_generation = self.desired.generation, "ignoring undecodable desired state");
                return;
            }
        };
        if !state.supersedes(&self.desired) {
            if state != self.desired {
                tracing::info!(
                    fleet = state.fleet,
                    generation = state.generation,
                    kept_generation = self.desired.generation,
                    "ignoring a stale desired state"
                );
            }
            self.step();
            return;
        }
        if state.fleet != self.desired.fleet && self.desired.fleet != 0 {
            tracing::warn!(
                from = self.desired.fleet,
                to = state.fleet,
                "desired state from another fleet store (the hub was rebuilt); following it"
            );
        }
        if state != self.desired {
            tracing::info!(
                generation = state.generation,
                workloads = state.workloads.len(),
                "new desired state"
            );
            if let Err(error) = state::save_desired(&self.config.data_dir, &state) {
                tracing::error!(%error, "desired state not persisted; it will be lost on restart");
            }
            self.desired = state;
            self.step();
            self.prune_disk();
            return;
        }
        self.step();
    }

    /// Keeps the broker subscriptions equal to what the node's modules subscribed to.
    fn sync_app_filters(&self) {
        if let Some(link) = &self.link {
            link.set_app_filters(&self.config.node, &self.apps.broker_filters());
        }
    }

    /// Removes modules and compiled artifacts no workload needs (keeping a few spares for
    /// rollbacks), so rollouts do not fill the device's disk.
    fn prune_disk(&self) {
        let code = |w: &WorkloadSpec| admission::code_of(w, HAS_COMPILER).blob().map(|b| b.digest);
        let mut keep: HashSet<Digest> = self.desired.workloads.iter().filter_map(code).collect();
        keep.extend(self.actual.workloads.values().filter_map(|a| code(&a.spec)));
        let pruned = self
            .store
            .prune(&keep)
            .and_then(|held| self.runtime.prune_cache(&held));
        if let Err(error) = pruned {
            tracing::warn!(%error, "could not remove unused modules");
        }
        // A deleted deployment's key-value store goes with it (as a namespace's volumes do).
        let deployments: HashSet<&str> = self
            .desired
            .workloads
            .iter()
            .chain(self.actual.workloads.values().map(|a| &a.spec))
            .map(|w| w.deployment.as_str())
            .collect();
        if let Err(error) = self.runtime.services().kv.prune(&deployments) {
            tracing::warn!(%error, "could not remove key-value stores of deleted deployments");
        }
    }

    /// Takes a blob-reply payload from the node's own `blob` topic or a chunk's fleet-wide
    /// topic: chunks the fetcher takes (see [`Fetcher::on_reply`]) are written to the partial
    /// download; anything else is ignored.
    pub fn handle_blob(&mut self, topic: &str, payload: &[u8]) {
        let reply = match decode::<BlobReply>(payload) {
            Ok(r) => r,
            Err(error) => return tracing::warn!(%topic, %error, "ignoring undecodable blob reply"),
        };
        let route = match parse_blob_topic(topic) {
            // A reply names its blob and range; on a chunk's topic they must be that chunk's.
            Some(at) if !reply_fits(&reply, at) => {
                return tracing::warn!(%topic, "ignoring a reply about another chunk");
            }
            Some(_) => Route::FanOut,
            None => Route::Direct,
        };
        let now = self.now();
        match self.fetcher.on_reply(reply, route, now) {
            ReplyOutcome::Ignored => {}
            ReplyOutcome::NotFound(digest) => {
                // The fetcher starts over from zero: so must the partial file.
                self.store.discard_part(&digest);
                tracing::warn!(digest = %digest, "hub does not have the module; will retry")
            }
            ReplyOutcome::Append {
                digest,
                offset,
                data,
                complete,
            } => {
                let written = self.store.write_part(&digest, offset, &data);
                match written.and_then(|()| {
                    if complete {
                        self.store.finish(&digest)
                    } else {
                        Ok(())
                    }
                }) {
                    Ok(()) if complete => {
                        tracing::info!(digest = %digest.short(), "module downloaded and verified");
                        self.fetcher.finished(&digest);
                        self.step();
                    }
                    Ok(()) => {}
                    Err(error) => {
                        tracing::warn!(%error, "module download failed; will retry");
                        self.store.discard_part(&digest);
                        self.fetcher.failed(&digest, error.to_string(), now);
                    }
                }
            }
        }
        self.send_blob_requests(now);
    }

    /// Keeps the fleet-wide topics of the chunks being fetched subscribed, and sends the chunk
    /// requests due: on `blob-want` (answered on the chunk's topic, once for every node
    /// asking) or `blob-req` (answered on this node's own), as the fetcher decides.
    fn send_blob_requests(&mut self, now: Duration) {
        let Some(link) = self.link.as_ref() else {
            return;
        };
        link.set_blob_topics(self.fetcher.fan_out_topics());
        if !self.connected {
            return;
        }
        let node = &self.config.node;
        let asks = self.fetcher.poll(now, |d, c| link.blob_granted(d, c));
        for ask in asks {
            let kind = match ask.route {
                Route::FanOut => NodeTopic::BlobWant,
                Route::Direct => NodeTopic::BlobRequest,
            };
            let payload = encode(&ask.request);
            if !link.publish(node_topic(node, kind), QoS::AtLeastOnce, false, payload) {
                // Not sent: not outstanding either, so it is asked for again next time.
                self.fetcher.unsent(&ask.request);
            }
        }
        // A transfer may have fallen back to its node's topic: no subscription needed.
        link.set_blob_topics(self.fetcher.fan_out_topics());
    }

    /// Publishes status when it changed, when [`STATUS_REFRESH`] passed, or when forced.
    fn publish_status(&mut self, now: Duration, force: bool) {
        let verdicts = admission::admit(&self.desired, &self.offer());
        let (store, fetcher) = (&self.store, &self.fetcher);
        let status = reconcile::status(
            &self.desired,
            &self.actual,
            &verdicts,
            &|d| store.has(d),
            &|d| fetcher.problem(d),
        );
        self.status_tx.send_if_modified(|cur| {
            let changed = *cur != status;
            if changed {
                *cur = status.clone();
            }
            changed
        });
        let due = self
            .last_sent
            .as_ref()
            .is_none_or(|(s, at)| *s != status || now >= *at + STATUS_REFRESH);
        let Some(link) = self.link.as_ref().filter(|_| self.connected) else {
            return;
        };
        if due || force {
            let topic = node_topic(&self.config.node, NodeTopic::Status);
            // Retained: a hub (re)starting against a broker that kept its connections to the
            // fleet learns every node's latest report on subscribe, without waiting a refresh.
            if link.publish(topic, QoS::AtLeastOnce, true, encode(&status)) {
                self.last_sent = Some((status, now));
            }
        }
    }

    fn on_log(&mut self, line: LogLine) {
        tracing::debug!(workload = %line.workload, stream = ?line.stream, "{}", line.line);
        let _ = self.log_tap.send(line.clone());
        self.log_batch.push(line);
        if self.log_batch.len() >= LOG_BATCH_LINES {
            self.flush_logs();
        }
    }

    /// Ships buffered lines (QoS 0, best effort); while offline they are dropped.
    fn flush_logs(&mut self) {
        let lines = std::mem::take(&mut self.log_batch);
        let Some(link) = self.link.as_ref().filter(|_| self.connected) else {
            return;
        };
        let topic = node_topic(&self.config.node, NodeTopic::Logs);
        let mut batch = LogBatch::default();
        let mut bytes = 0;
        for line in lines {
            if bytes + line.line.len() > LOG_BATCH_BYTES && !batch.lines.is_empty() {
                link.publish(
                    topic.clone(),
                    QoS::AtMostOnce,
                    false,
                    encode(&std::mem::take(&mut batch)),
                );
                bytes = 0;
            }
            bytes += line.line.len() + line.workload.len();
            batch.lines.push(line);
        }
        if !batch.lines.is_empty() {
            link.publish(topic, QoS::AtMostOnce, false, encode(&batch));
        }
    }

    /// Graceful stop: last logs, offline presence, instances aborted, DISCONNECT sent.
    async fn shutdown(&mut self, events: &mut mpsc::Receiver<LinkEvent>) {
        tracing::info!("shutting down");
        while let Ok(line) = self.log_rx.try_recv() {
            self.on_log(line);
        }
        self.flush_logs();
        // Event modules get their `on_stop`, within the grace period; then everything ends.
        for running in self.instances.values() {
            let _ = running.stop.send(true);
        }
        let graceful = async { while self.tasks.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(STOP_GRACE * 2 + Duration::from_millis(100), graceful).await;
        while let Ok(line) = self.log_rx.try_recv() {
            self.on_log(line);
        }
        self.flush_logs();
        self.tasks.shutdown().await;
        self.instances.clear();
        if let Some(link) = self.link.as_ref().filter(|_| self.connected) {
            let topic = node_topic(&self.config.node, NodeTopic::Online);
            link.publish(topic, QoS::AtLeastOnce, true, encode(&Presence::Offline));
            link.disconnect();
            let closed = async {
                while let Some(ev) = events.recv().await {
                    if matches!(ev, LinkEvent::Closed | LinkEvent::Disconnected(_)) {
                        break;
                    }
                }
            };
            if tokio::time::timeout(Duration::from_secs(3), closed)
                .await
                .is_err()
            {
                tracing::warn!("broker did not take the disconnect in time");
            }
        }
        self.link = None;
    }
}

/// Whether `reply` belongs on the topic of chunk `at`: the same blob, starting in that chunk.
fn reply_fits(reply: &BlobReply, at: (Digest, u64)) -> bool {
    match reply {
        BlobReply::Chunk { digest, offset, .. } => (*digest, blob_chunk(*offset)) == at,
        BlobReply::NotFound { digest } => *digest == at.0,
    }
}

#[cfg(test)]
mod announce_tests;
