//! `wasmfleet serve`: wires the store, the controller, MQTT and the HTTP API together, and
//! shuts them down in order.
//!
//! Tasks, and what each may wait on:
//! - the MQTT link's router: nothing (it hands everything to the [`Inbox`]);
//! - fleet ingest: drains coalesced presence and status into one controller change at a time
//!   (on the blocking pool);
//! - the log writer: drains the byte-bounded log queue into the log store (blocking pool);
//! - blob servers: answer chunk requests, a bounded number at once;
//! - the publisher: sends the controller's [`Outbox`] to the broker;
//! - the ticker: grace periods, lagging nodes, snapshot refresh, retention;
//! - the HTTP API.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, Semaphore, watch};
use tokio::task::JoinHandle;
use wasmfleet_common::BrokerUrl;
use wasmfleet_common::engine::Checker;
use wasmfleet_proto::topic::{self, NodeTopic};
use wasmfleet_proto::{BlobReply, BlobRequest, LogBatch, MAX_BLOB_CHUNK, MAX_LOG_LINE};

use crate::api::{self, AppState};
use crate::clock::now_ms;
use crate::controller::handle::Visibility;
use crate::controller::{self, Controller, ControllerHandle, FleetSnapshot, Outbox};
use crate::mqtt::inbox::{BlobQueue, Drops, LogQueue};
use crate::mqtt::{EmbeddedBroker, FleetMessage, Inbox, Link};
use crate::store::{BlobStore, LogRecord, LogStore, Retention, SqliteStore};

/// Options of `wasmfleet serve`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Data directory (SQLite files, blobs).
    pub data: PathBuf,
    /// HTTP API address.
    pub http: SocketAddr,
    /// Where the embedded broker listens; ignored when `broker` is set.
    pub mqtt: SocketAddr,
    /// External broker; no embedded broker is started when set.
    pub broker: Option<BrokerUrl>,
    /// Controller tunables.
    pub controller: controller::Config,
    /// How much workload log the hub keeps.
    pub log_retention: Retention,
}

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Data directory problems.
    #[error("data directory {path}: {reason}")]
    Data {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The store failed to open or load.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Blob store trouble.
    #[error(transparent)]
    Blobs(#[from] crate::store::BlobError),
    /// The module checker could not be set up.
    #[error(transparent)]
    Engine(#[from] wasmfleet_common::engine::AdmitError),
    /// The embedded broker failed.
    #[error(transparent)]
    Broker(#[from] crate::mqtt::broker::BrokerError),
    /// The HTTP listener failed.
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Http {
        /// Requested address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// How long in-flight HTTP requests may take to finish at shutdown.
pub const HTTP_DRAIN: Duration = Duration::from_secs(10);

/// A running hub.
#[derive(Debug)]
pub struct RunningHub {
    /// Where the HTTP API listens.
    pub http_addr: SocketAddr,
    /// The broker nodes connect to.
    pub broker: BrokerUrl,
    stop_http: watch::Sender<bool>,
    http: JoinHandle<()>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    link: Link,
    _embedded: Option<EmbeddedBroker>,
}

/// Starts every part of the hub and returns once all listen.
pub async fn start(opts: Options) -> Result<RunningHub, ServeError> {
    std::fs::create_dir_all(&opts.data).map_err(|e| ServeError::Data {
        path: opts.data.clone(),
        reason: e.to_string(),
    })?;
    let store = SqliteStore::open(&opts.data.join("hub.db"))?;
    let events = Arc::new(store.reader()?);
    let log_store = LogStore::open(&opts.data.join("logs.db"), opts.log_retention)?;
    let logs = Arc::new(log_store.reader()?);
    let blobs = BlobStore::open(&opts.data.join("blobs"))?;
    let checker = Arc::new(
        tokio::task::spawn_blocking(Checker::new)
            .await
            .map_err(|e| wasmfleet_common::engine::AdmitError::Setup(e.to_string()))??,
    );
    let (controller, outbox) = ControllerHandle::new(Controller::load(
        Box::new(store),
        opts.controller,
        now_ms(),
    )?);

    let embedded = match &opts.broker {
        Some(_) => None,
        None => Some(EmbeddedBroker::start(opts.mqtt).await?),
    };
    let public_broker = opts.broker.clone().unwrap_or_else(|| BrokerUrl {
        host: opts.mqtt.ip().to_string(),
        port: opts.mqtt.port(),
    });
    // The hub's own client uses the embedded broker's loopback listener, sized for it.
    let hub_broker = match &embedded {
        Some(b) => BrokerUrl {
            host: b.internal_addr().ip().to_string(),
            port: b.internal_addr().port(),
        },
        None => public_broker.clone(),
    };

    let (shutdown, shutdown_rx) = watch::channel(false);
    let (inbox, log_queue, blob_queue) = Inbox::new();
    let drops = inbox.drops.clone();
    let fleet_inbox = inbox.fleet.clone();
    let (link, link_task) = Link::start(&hub_broker, inbox, shutdown_rx.clone());

    let listener = tokio::net::TcpListener::bind(opts.http)
        .await
        .map_err(|source| ServeError::Http {
            addr: opts.http,
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| ServeError::Http {
        addr: opts.http,
        source,
    })?;
    let state = AppState {
        controller: controller.clone(),
        blobs: blobs.clone(),
        checker,
        events,
        logs,
        uploads: Arc::new(Semaphore::new(api::CONCURRENT_UPLOADS)),
    };
    let app = api::router(state);
    let (stop_http, mut stop_http_rx) = watch::channel(false);
    let http = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stop_http_rx.changed().await;
        });
        if let Err(e) = serve.await {
            tracing::error!("HTTP server failed: {e}");
        }
    });

    let tasks = vec![
        link_task,
        tokio::spawn(publisher(link.clone(), outbox, shutdown_rx.clone())),
        tokio::spawn(fleet_ingest(
            controller.clone(),
            fleet_inbox,
            shutdown_rx.clone(),
        )),
        tokio::spawn(log_writer(
            controller.clone(),
            log_store,
            log_queue,
            shutdown_rx.clone(),
        )),
        tokio::spawn(blob_servers(blobs, link.clone(), blob_queue)),
        tokio::spawn(ticker(controller, drops, shutdown_rx)),
    ];
    tracing::info!(http = %http_addr, mqtt = %public_broker, data = %opts.data.display(), "hub started");
    Ok(RunningHub {
        http_addr,
        broker: public_broker,
        stop_http,
        http,
        shutdown,
        tasks,
        link,
        _embedded: embedded,
    })
}

impl RunningHub {
    /// Stops accepting requests and lets in-flight ones finish (up to [`HTTP_DRAIN`]), then
    /// disconnects from the broker and stops the tasks.
    pub async fn shutdown(mut self) {
        let _ = self.stop_http.send(true);
        if tokio::time::timeout(HTTP_DRAIN, &mut self.http)
            .await
            .is_err()
        {
            tracing::warn!("HTTP requests still running after {HTTP_DRAIN:?}; cutting them off");
            self.http.abort();
        }
        // DISCONNECT while the router still runs to see it go out.
        self.link.disconnect().await;
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            // Tasks watch the signal; blob servers and anything stuck are cut off.
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

/// Publishes the controller's outbox in order, waiting for the broker link as needed.
async fn publisher(link: Link, outbox: Arc<Outbox>, mut shutdown: watch::Receiver<bool>) {
    loop {
        while let Some(p) = outbox.pop() {
            link.publish(p.topic, p.payload, p.retain).await;
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            () = outbox.wait() => {}
        }
    }
}

/// Feeds coalesced presence and status to the controller, one change per drained batch.
async fn fleet_ingest(
    controller: ControllerHandle,
    inbox: Arc<crate::mqtt::inbox::FleetInbox>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            () = inbox.wait() => {}
        }
        let messages = inbox.drain();
        if messages.is_empty() {
            continue;
        }
        let _ = controller
            .change(Visibility::Soon, move |c| {
                let now = now_ms();
                let mut publish = Vec::new();
                for m in messages {
                    let result = match m {
                        FleetMessage::Connected => Ok(c.republish_all(now)),
                        FleetMessage::Presence(node, p) => c.on_presence(&node, p, now),
                        FleetMessage::Status(node, s) => c.on_status(&node, s, now),
                    };
                    match result {
                        Ok(p) => publish.extend(p),
                        Err(e) => tracing::error!("controller: {e}"),
                    }
                }
                Ok::<_, controller::ControllerError>(((), publish))
            })
            .await;
    }
}

/// How long lines of a workload that was removed from its node are still accepted (they were
/// printed just before it stopped, and travel in the agent's log batches).
const LATE_LINES_MS: u64 = 30_000;
/// Log batches written in one transaction at most.
const LOG_BATCHES_PER_WRITE: usize = 256;
/// How often retention runs even without new lines.
const LOG_TRIM_EVERY: Duration = Duration::from_secs(60);

/// Writes log batches to the log store. A line is kept only if its workload is placed on the
/// node that sent it (or was, moments ago): a node cannot write into another deployment's
/// logs by naming its workloads.
async fn log_writer(
    controller: ControllerHandle,
    store: LogStore,
    mut queue: LogQueue,
    mut shutdown: watch::Receiver<bool>,
) {
    let store = Arc::new(AsyncMutex::new((store, Attribution::default())));
    let mut last_trim = tokio::time::Instant::now();
    loop {
        let first = tokio::select! {
            _ = shutdown.changed() => return,
            next = tokio::time::timeout(LOG_TRIM_EVERY, queue.recv()) => next,
        };
        let mut batches = Vec::new();
        match first {
            Ok(None) => return,
            Ok(Some(b)) => batches.push(b),
            Err(_) => {}
        }
        while batches.len() < LOG_BATCHES_PER_WRITE {
            match queue.try_recv() {
                Some(b) => batches.push(b),
                None => break,
            }
        }
        let trim = last_trim.elapsed() >= LOG_TRIM_EVERY;
        if trim {
            last_trim = tokio::time::Instant::now();
        }
        let snapshot = controller.snapshot();
        let store = store.clone().lock_owned().await;
        let done = tokio::task::spawn_blocking(move || {
            let mut store = store;
            let (logs, attribution) = &mut *store;
            let now = now_ms();
            let records = attribution.records(&snapshot, batches, now);
            if let Err(e) = logs.append(&records, now) {
                tracing::error!("writing logs: {e}");
            }
            if trim && let Err(e) = logs.trim(now) {
                tracing::warn!("trimming logs: {e}");
            }
        })
        .await;
        if let Err(e) = done {
            tracing::error!("log writer failed: {e}");
        }
    }
}

/// Which deployment a node's workload belongs to, remembering recent placements.
#[derive(Debug, Default)]
struct Attribution {
    recent: HashMap<(String, String), (String, u64)>,
}

impl Attribution {
    fn deployment(
        &mut self,
        snapshot: &FleetSnapshot,
        node: &str,
        workload: &str,
        now: u64,
    ) -> Option<String> {
        let key = (node.to_owned(), workload.to_owned());
        if let Some(d) = snapshot.deployment_on(node, workload) {
            self.recent.insert(key, (d.to_owned(), now));
            return Some(d.to_owned());
        }
        match self.recent.get(&key) {
            Some((d, seen)) if now.saturating_sub(*seen) < LATE_LINES_MS => Some(d.clone()),
            _ => None,
        }
    }

    fn records(
        &mut self,
        snapshot: &FleetSnapshot,
        batches: Vec<(String, Vec<u8>)>,
        now: u64,
    ) -> Vec<LogRecord> {
        self.recent
            .retain(|_, (_, seen)| now.saturating_sub(*seen) < LATE_LINES_MS);
        let mut out = Vec::new();
        let mut refused = 0usize;
        for (node, payload) in batches {
            let batch = match wasmfleet_proto::decode::<LogBatch>(&payload) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(%node, "dropping undecodable log batch: {e}");
                    continue;
                }
            };
            for l in batch.lines {
                let Some(deployment) = self.deployment(snapshot, &node, &l.workload, now) else {
                    refused += 1;
                    continue;
                };
                let mut line = l.line;
                if line.len() > MAX_LOG_LINE {
                    line.truncate(line.floor_char_boundary(MAX_LOG_LINE));
                }
                out.push(LogRecord {
                    id: 0,
                    ts_ms: l.ts_ms,
                    deployment,
                    workload: l.workload,
                    node: node.clone(),
                    stream: l.stream.as_str().into(),
                    line,
                });
            }
        }
        if refused > 0 {
            tracing::debug!(
                refused,
                "log lines of workloads not placed on their node dropped"
            );
        }
        out
    }
}

/// Chunk requests answered at once.
const BLOB_SERVERS: usize = 16;

/// Answers chunk requests from the blob store, at most [`BLOB_SERVERS`] at a time (the queue
/// in front of them is bounded; nodes re-ask after a timeout).
async fn blob_servers(blobs: BlobStore, link: Link, mut queue: BlobQueue) {
    let permits = Arc::new(Semaphore::new(BLOB_SERVERS));
    while let Some((node, req)) = queue.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (blobs, link) = (blobs.clone(), link.clone());
        tokio::spawn(async move {
            serve_blob(blobs, link, node, req).await;
            drop(permit);
        });
    }
}

/// Answers one chunk request on the asking node's blob topic.
async fn serve_blob(blobs: BlobStore, link: Link, node: String, req: BlobRequest) {
    let len = req.len.min(MAX_BLOB_CHUNK);
    let digest = req.digest;
    let read =
        tokio::task::spawn_blocking(move || blobs.read_range(&digest, req.offset, len)).await;
    let reply = match read {
        Ok(Ok(Some((total, data)))) => BlobReply::Chunk {
            digest,
            offset: req.offset,
            total,
            data,
        },
        Ok(Ok(None)) => BlobReply::NotFound { digest },
        Ok(Err(e)) => {
            tracing::error!("serving blob {digest} to {node}: {e}");
            BlobReply::NotFound { digest }
        }
        Err(_) => return,
    };
    let topic = topic::node_topic(&node, NodeTopic::Blob);
    link.publish(topic, wasmfleet_proto::encode(&reply), false)
        .await;
}

/// Periodic controller work: snapshot refresh, grace periods and retries, retention, and a
/// word about anything the inbox dropped.
async fn ticker(
    controller: ControllerHandle,
    drops: Arc<Drops>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(controller::handle::SNAPSHOT_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let per_second = (Duration::from_secs(1).as_millis()
        / controller::handle::SNAPSHOT_EVERY.as_millis())
    .max(1) as u64;
    let mut ticks = 0u64;
    let mut reported = (0, 0, 0);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = interval.tick() => {}
        }
        ticks += 1;
        if !ticks.is_multiple_of(per_second) {
            let c = controller.clone();
            let _ = tokio::task::spawn_blocking(move || c.refresh()).await;
            continue;
        }
        let result = controller
            .change(Visibility::Soon, |c| {
                c.tick(now_ms()).map(|publish| ((), publish))
            })
            .await;
        if let Err(e) = result {
            tracing::error!("controller tick: {e}");
        }
        if ticks.is_multiple_of(60 * per_second) {
            let trimmed = controller
                .change(Visibility::Soon, |c| c.trim().map(|()| ((), vec![])))
                .await;
            if let Err(e) = trimmed {
                tracing::warn!("trimming events: {e}");
            }
        }
        let now = (
            drops.log_batches.load(Ordering::Relaxed),
            drops.blob_requests.load(Ordering::Relaxed),
            drops.fleet_reports.load(Ordering::Relaxed),
        );
        if now != reported {
            tracing::warn!(
                log_batches = now.0 - reported.0,
                blob_requests = now.1 - reported.1,
                fleet_reports = now.2 - reported.2,
                "inbound traffic dropped: the hub is overloaded"
            );
            reported = now;
        }
    }
}
