//! `wasmfleet serve`: wires the store, the controller, MQTT and the HTTP API together, and
//! shuts them down in order.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use wasmfleet_proto::topic::{self, NodeTopic};
use wasmfleet_proto::{BlobReply, BlobRequest, MAX_BLOB_CHUNK};

use crate::api::{self, AppState, now_ms};
use crate::controller::{self, Controller, ControllerError, ControllerHandle, Publish};
use crate::mqtt::{BrokerUrl, EmbeddedBroker, Inbound, Link};
use crate::store::{BlobStore, SqliteStore};

/// Options of `wasmfleet serve`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Data directory (SQLite file, blobs).
    pub data: PathBuf,
    /// HTTP API address.
    pub http: SocketAddr,
    /// Where the embedded broker listens; ignored when `broker` is set.
    pub mqtt: SocketAddr,
    /// External broker; no embedded broker is started when set.
    pub broker: Option<BrokerUrl>,
    /// Controller tunables.
    pub controller: controller::Config,
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

/// A running hub.
#[derive(Debug)]
pub struct RunningHub {
    /// Where the HTTP API listens.
    pub http_addr: SocketAddr,
    /// The broker the hub uses.
    pub broker: BrokerUrl,
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
    let blobs = BlobStore::open(&opts.data.join("blobs"))?;
    let (controller, publish_rx) = ControllerHandle::new(Controller::load(
        Box::new(store),
        opts.controller,
        now_ms(),
    )?);

    let embedded = match &opts.broker {
        Some(_) => None,
        None => Some(EmbeddedBroker::start(opts.mqtt).await?),
    };
    let broker = opts.broker.clone().unwrap_or_else(|| {
        let addr = opts.mqtt;
        BrokerUrl {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    });

    let (shutdown, shutdown_rx) = watch::channel(false);
    let (inbound_tx, inbound_rx) = mpsc::channel(1024);
    let (link, link_task) = Link::start(&broker, inbound_tx, shutdown_rx.clone());

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
    };
    let app = api::router(state);
    let mut http_shutdown = shutdown_rx.clone();
    let http_task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = http_shutdown.changed().await;
        });
        if let Err(e) = serve.await {
            tracing::error!("HTTP server failed: {e}");
        }
    });

    let tasks = vec![
        link_task,
        http_task,
        tokio::spawn(publisher(link.clone(), publish_rx)),
        tokio::spawn(ingest(controller.clone(), blobs, link.clone(), inbound_rx)),
        tokio::spawn(ticker(controller, shutdown_rx)),
    ];
    tracing::info!(http = %http_addr, mqtt = %broker, data = %opts.data.display(), "hub started");
    Ok(RunningHub {
        http_addr,
        broker,
        shutdown,
        tasks,
        link,
        _embedded: embedded,
    })
}

impl RunningHub {
    /// Stops accepting work, disconnects from the broker and waits for the tasks.
    pub async fn shutdown(self) {
        // DISCONNECT first, while the event loop still runs to send it.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.link.disconnect()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Publishes in order whatever the controller decided.
async fn publisher(link: Link, mut rx: mpsc::UnboundedReceiver<Publish>) {
    while let Some(p) = rx.recv().await {
        link.publish(p.topic, p.payload, p.retain).await;
    }
}

/// Feeds fleet messages to the controller; answers blob requests from the blob store.
async fn ingest(
    controller: ControllerHandle,
    blobs: BlobStore,
    link: Link,
    mut rx: mpsc::Receiver<Inbound>,
) {
    let pool = Arc::new(tokio::sync::Semaphore::new(BLOB_SERVERS));
    while let Some(msg) = rx.recv().await {
        let now = now_ms();
        let msg = match msg {
            Inbound::BlobRequest(req) => {
                // Bounded: under a fleet-wide rollout, excess requests are dropped rather than
                // queued without limit; the node asks again after its timeout.
                match pool.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let (blobs, link) = (blobs.clone(), link.clone());
                        tokio::spawn(async move {
                            serve_blob(blobs, link, req).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        tracing::debug!(node = %req.node, "blob serving saturated; request dropped")
                    }
                }
                continue;
            }
            other => other,
        };
        let result = controller.change(|c| {
            let publish = match msg {
                Inbound::Connected => c.republish_all(now),
                Inbound::Presence(node, p) => c.on_presence(&node, p, now)?,
                Inbound::Status(node, s) => c.on_status(&node, s, now).map(|()| vec![])?,
                Inbound::Logs(node, l) => c.on_logs(&node, l).map(|()| vec![])?,
                Inbound::BlobRequest(_) => vec![],
            };
            Ok::<_, ControllerError>(((), publish))
        });
        if let Err(e) = result {
            tracing::error!("controller: {e}");
        }
    }
}

/// Blob chunk requests served at once.
const BLOB_SERVERS: usize = 64;

/// Answers one chunk request.
async fn serve_blob(blobs: BlobStore, link: Link, req: BlobRequest) {
    if wasmfleet_proto::name::validate(&req.node).is_err() {
        tracing::warn!(node = %req.node, "blob request from an invalid node name");
        return;
    }
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
            tracing::error!("serving blob {digest} to {}: {e}", req.node);
            BlobReply::NotFound { digest }
        }
        Err(_) => return,
    };
    let topic = topic::node_topic(&req.node, NodeTopic::Blob);
    link.publish(topic, wasmfleet_proto::encode(&reply), false)
        .await;
}

/// Periodic controller work: grace periods, retries, retention.
async fn ticker(controller: ControllerHandle, mut shutdown: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = interval.tick() => {}
        }
        ticks += 1;
        if let Err(e) = controller.change(|c| c.tick(now_ms()).map(|publish| ((), publish))) {
            tracing::error!("controller tick: {e}");
        }
        if ticks.is_multiple_of(60)
            && let Err(e) = controller.change(|c| c.trim().map(|()| ((), vec![])))
        {
            tracing::warn!("trimming events and logs: {e}");
        }
    }
}
