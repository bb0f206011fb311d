//! `wasmfleet serve`: wires the store, the controller, MQTT and the HTTP API together, and
//! shuts them down in order.
//!
//! Tasks, and what each may wait on:
//! - the MQTT link's router: nothing (it hands everything to the [`Inbox`]);
//! - fleet ingest, the log writer ([`crate::ingest`]), blob servers ([`crate::blob_fanout`]):
//!   the controller, the log store and the blob store, each off the async workers;
//! - the publisher: sends the controller's [`Outbox`] to the broker;
//! - the ticker: grace periods, lagging nodes, snapshot refresh, retention, freed memory;
//! - the HTTP API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use wasmfleet_common::BrokerUrl;
use wasmfleet_common::engine::Checker;

use crate::api::{self, AppState};
use crate::blob_fanout::blob_servers;
use crate::clock::now_ms;
use crate::controller::handle::Visibility;
use crate::controller::{self, Controller, ControllerHandle, Outbox};
use crate::ingest::{fleet_ingest, liveness_watch, log_writer};
use crate::mqtt::inbox::Drops;
use crate::mqtt::link::KeepAlive;
use crate::mqtt::{EmbeddedBroker, Inbox, Link, MosquittoOptions, SupervisedMosquitto};
use crate::store::{BlobStore, LogStore, Retention, SqliteStore};

/// Options of `wasmfleet serve`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Data directory (SQLite files, blobs).
    pub data: PathBuf,
    /// HTTP API address.
    pub http: SocketAddr,
    /// Where the hub's own broker listens; ignored when `broker` is set.
    pub mqtt: SocketAddr,
    /// Which broker the hub runs itself.
    pub own_broker: OwnBroker,
    /// External broker; the hub runs none of its own when set.
    pub broker: Option<BrokerUrl>,
    /// Controller tunables.
    pub controller: controller::Config,
    /// How much workload log the hub keeps.
    pub log_retention: Retention,
}

/// The broker the hub runs itself, when no external one is named.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum OwnBroker {
    /// rmqtt, inside the hub's process: one binary runs everything.
    #[default]
    Rmqtt,
    /// mosquitto, a process the hub starts and watches: about a fifth of rmqtt's memory per
    /// connected node ([`crate::mqtt::mosquitto`]).
    Mosquitto {
        /// The program; `None` looks for `mosquitto` on `PATH` and in `/usr/sbin`.
        program: Option<PathBuf>,
    },
}

/// The broker the hub runs, kept for as long as the hub runs.
#[derive(Debug)]
enum RunningBroker {
    Rmqtt(EmbeddedBroker),
    Mosquitto(SupervisedMosquitto),
}

impl RunningBroker {
    async fn start(opts: &Options) -> Result<Self, ServeError> {
        Ok(match &opts.own_broker {
            OwnBroker::Rmqtt => RunningBroker::Rmqtt(EmbeddedBroker::start(opts.mqtt).await?),
            OwnBroker::Mosquitto { program } => RunningBroker::Mosquitto(
                SupervisedMosquitto::start(MosquittoOptions {
                    program: program.clone(),
                    addr: opts.mqtt,
                    dir: opts.data.clone(),
                })
                .await?,
            ),
        })
    }

    /// Where the hub's own client connects: rmqtt has a loopback listener sized for it.
    fn hub_addr(&self) -> SocketAddr {
        match self {
            RunningBroker::Rmqtt(b) => b.internal_addr(),
            RunningBroker::Mosquitto(m) => m.client_addr(),
        }
    }
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
    /// The mosquitto the hub runs failed to start.
    #[error(transparent)]
    Mosquitto(#[from] crate::mqtt::mosquitto::MosquittoError),
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
    own_broker: Option<RunningBroker>,
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

    // Before the broker accepts its first node.
    let open_files = crate::limits::raise_open_files();
    let own_broker = match &opts.broker {
        Some(_) => None,
        None => Some(RunningBroker::start(&opts).await?),
    };
    let public_broker = opts.broker.clone().unwrap_or_else(|| BrokerUrl {
        host: opts.mqtt.ip().to_string(),
        port: opts.mqtt.port(),
    });
    let hub_broker = match &own_broker {
        Some(b) => BrokerUrl {
            host: b.hub_addr().ip().to_string(),
            port: b.hub_addr().port(),
        },
        None => public_broker.clone(),
    };

    let (shutdown, shutdown_rx) = watch::channel(false);
    let (inbox, log_queue, blob_queue) = Inbox::new();
    let drops = inbox.drops.clone();
    let fleet_inbox = inbox.fleet.clone();
    let liveness = inbox.liveness.clone();
    let watch_inbox = inbox.clone();
    let keep_alive = match &own_broker {
        Some(_) => KeepAlive::Own,
        None => KeepAlive::External,
    };
    let (link, link_task) = Link::start(&hub_broker, keep_alive, inbox, shutdown_rx.clone());

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
    let artifacts = crate::artifacts::Artifacts::new(blobs.clone());
    let state = AppState {
        controller: controller.clone(),
        blobs: blobs.clone(),
        checker,
        artifacts: artifacts.clone(),
        events,
        logs,
        uploads: Arc::new(Semaphore::new(api::CONCURRENT_UPLOADS)),
        liveness,
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
        tokio::spawn(liveness_watch(
            watch_inbox,
            controller.clone(),
            shutdown_rx.clone(),
        )),
        tokio::spawn(log_writer(
            controller.clone(),
            log_store,
            log_queue,
            shutdown_rx.clone(),
        )),
        tokio::spawn(blob_servers(blobs, link.clone(), blob_queue)),
        tokio::spawn(crate::artifacts::run(
            artifacts,
            controller.clone(),
            shutdown_rx.clone(),
        )),
        tokio::spawn(ticker(controller, drops, shutdown_rx)),
    ];
    tracing::info!(http = %http_addr, mqtt = %public_broker, data = %opts.data.display(), open_files, "hub started");
    Ok(RunningHub {
        http_addr,
        broker: public_broker,
        stop_http,
        http,
        shutdown,
        tasks,
        link,
        own_broker,
    })
}

impl RunningHub {
    /// Stops accepting requests and lets in-flight ones finish (up to [`HTTP_DRAIN`]), then
    /// disconnects from the broker, stops the tasks, and stops the broker it runs.
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
        match self.own_broker {
            Some(RunningBroker::Mosquitto(m)) => m.stop().await,
            Some(RunningBroker::Rmqtt(_)) | None => {}
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
            if controller.is_stale() {
                let c = controller.clone();
                let _ = tokio::task::spawn_blocking(move || c.refresh_if_due()).await;
            }
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
