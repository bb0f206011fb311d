//! The simulated nodes on the wire: each on its own MQTT connection (as real agents are, with
//! its Last Will), or hollow (many nodes multiplexed over a few connections, for fleets larger
//! than one machine's ports). Both drive [`SimNode`] and record when each node first reports
//! the deployment under test Running. Fetching nodes (`--module-kib`) also subscribe to their
//! `blob` topics and, while they fetch on the fan-out route, to the fleet-wide topics of the
//! chunks they still need (one subscription per connection, each message handed to every
//! member node fetching that blob).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use edge_agent::blobs::Route;
use rand::Rng;
use rumqttc::{LastWill, MqttOptions, QoS};
use tokio::sync::{Semaphore, mpsc, watch};
use wasmfleet_common::mqtt::{Backoff, Session, SessionEvent};
use wasmfleet_common::subscribe::Qos;
use wasmfleet_proto::topic::{NodeTopic, blob_topic, node_topic, parse_blob_topic};
use wasmfleet_proto::{BlobReply, Digest, Heartbeat, NodeStatus, Presence, decode, encode};

use crate::node::{SimNode, runs};

/// How often simulated nodes beat (the agents' default).
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// Connection handshakes in flight at once: a listen backlog is finite.
const CONNECTING: usize = 256;
/// How long a connected client may refuse every publish before the simulator says so.
const STALL_REPORT: Duration = Duration::from_secs(30);
/// How often fetching nodes look for chunk requests that timed out.
const FETCH_TICK: Duration = Duration::from_millis(100);
/// How soon requests held for a blob topic subscription are looked at again.
const HOLD_POLL: Duration = Duration::from_millis(5);
const BACKOFF: Backoff = Backoff {
    min: Duration::from_millis(200),
    max: Duration::from_secs(5),
};

/// How the simulated nodes reach the broker.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Nodes.
    pub nodes: usize,
    /// None: one connection per node; Some(m): m nodes per shared connection.
    pub hollow: Option<usize>,
    /// Delay before a node acts on a desired state.
    pub latency: Duration,
    /// Share of desired states a node loses (the hub's re-send brings them back).
    pub loss: f64,
    /// Nodes hold no module and fetch what their desired state names.
    pub fetch: bool,
}

/// What the nodes did, shared with the driver.
#[derive(Debug)]
pub struct Record {
    /// When the run's clock started.
    pub origin: Instant,
    /// Per node: ms since `origin` + 1 when it first reported the deployment Running (0: not
    /// yet).
    pub converged: Vec<AtomicU64>,
    /// The deployment whose convergence is measured, once applied (empty before).
    pub deployment: RwLock<String>,
    /// Fetches started from now on fan out (`blob-want`) rather than ask per node.
    pub fan_out: AtomicBool,
    /// Blob traffic of fetching nodes.
    pub blobs: BlobCounters,
    /// Nodes connected (their presence published).
    pub connected: AtomicU64,
    /// Messages and approximate bytes on the wire, received and sent by nodes.
    pub msgs_in: AtomicU64,
    /// See `msgs_in`.
    pub bytes_in: AtomicU64,
    /// See `msgs_in`.
    pub msgs_out: AtomicU64,
    /// See `msgs_in`.
    pub bytes_out: AtomicU64,
    /// Per connection, what its session did: the evidence when nodes never get Ready.
    pub links: Vec<LinkState>,
    /// Nodes per connection (1 unless hollow).
    pub per_link: usize,
}

/// What one connection's session did, in ms since the record's origin (+1; 0: never).
#[derive(Debug, Default)]
pub struct LinkState {
    connected: AtomicBool,
    disconnects: AtomicU64,
    last_error: Mutex<String>,
    /// The last message from the broker.
    last_in_ms: AtomicU64,
    /// The last publish the client's queue took.
    last_taken_ms: AtomicU64,
}

impl Record {
    fn new(nodes: usize, per_link: usize) -> Record {
        Record {
            origin: Instant::now(),
            converged: (0..nodes).map(|_| AtomicU64::new(0)).collect(),
            deployment: RwLock::default(),
            fan_out: AtomicBool::new(true),
            blobs: BlobCounters::default(),
            connected: AtomicU64::new(0),
            msgs_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            msgs_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            links: (0..nodes.div_ceil(per_link))
                .map(|_| LinkState::default())
                .collect(),
            per_link,
        }
    }

    fn ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
    }

    /// What the session of node `index`'s connection did, in a line.
    pub fn link_of(&self, index: usize) -> String {
        let c = index / self.per_link;
        let l = &self.links[c];
        let now = self.ms();
        let ago = |at: &AtomicU64| match at.load(Ordering::Relaxed) {
            0 => "never".to_string(),
            t => format!("{:.1} s ago", now.saturating_sub(t) as f64 / 1000.0),
        };
        let error = l.last_error.lock().unwrap_or_else(PoisonError::into_inner);
        format!(
            "connection {c} ({}): {}, {} disconnects{}, last message in {}, last publish taken {}",
            name(index),
            if l.connected.load(Ordering::Relaxed) {
                "connected"
            } else {
                "disconnected"
            },
            l.disconnects.load(Ordering::Relaxed),
            if error.is_empty() {
                String::new()
            } else {
                format!(" (last: {error})")
            },
            ago(&l.last_in_ms),
            ago(&l.last_taken_ms),
        )
    }

    /// Convergence times in ms since `since_ms` (after `origin`) of the nodes that converged.
    pub fn convergence_ms(&self, since_ms: u64) -> Vec<u64> {
        self.converged
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .filter(|c| *c > 0)
            .map(|c| (c - 1).saturating_sub(since_ms))
            .collect()
    }

    /// A message of `bytes` on the wire was queued.
    fn sent(&self, bytes: u64) {
        self.msgs_out.fetch_add(1, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Measures the convergence of `deployment` from now on: forgets who ran the last one.
    pub fn measure(&self, deployment: &str) {
        *self
            .deployment
            .write()
            .unwrap_or_else(PoisonError::into_inner) = deployment.to_owned();
        for c in &self.converged {
            c.store(0, Ordering::Relaxed);
        }
    }

    fn reported(&self, index: usize, status: &NodeStatus) {
        let d = self
            .deployment
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if d.is_empty() {
            return;
        }
        if runs(status, &d) {
            let at = self.origin.elapsed().as_millis() as u64 + 1;
            let _ =
                self.converged[index].compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

/// Counters of blob traffic, as the nodes saw it.
#[derive(Debug, Default)]
pub struct BlobCounters {
    /// Chunk requests sent on `blob-want`, and their bytes on the wire.
    pub fan_out_asks: AtomicU64,
    /// See `fan_out_asks`: on `blob-req`.
    pub direct_asks: AtomicU64,
    /// Bytes of both kinds of asks.
    pub ask_bytes: AtomicU64,
    /// Replies on nodes' own `blob` topics: each is one publication by the hub.
    pub direct_replies: AtomicU64,
    /// Their bytes on the wire.
    pub direct_reply_bytes: AtomicU64,
    /// Messages on blob topics received by the simulator's connections (a hollow connection
    /// counts one for all its nodes).
    pub fan_out_received: AtomicU64,
    /// Their bytes on the wire.
    pub fan_out_received_bytes: AtomicU64,
    /// Modules fetched and verified by nodes.
    pub fetched: AtomicU64,
    /// Size of the last module a node fetched.
    pub artifact_bytes: AtomicU64,
}

impl BlobCounters {
    /// The current values, in field order.
    pub fn snapshot(&self) -> [u64; 8] {
        [
            &self.fan_out_asks,
            &self.direct_asks,
            &self.ask_bytes,
            &self.direct_replies,
            &self.direct_reply_bytes,
            &self.fan_out_received,
            &self.fan_out_received_bytes,
            &self.fetched,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    }
}

/// Bytes of an MQTT 3.1.1 PUBLISH: fixed header (2, more for long ones), topic length (2),
/// topic, packet id (2, QoS 1), payload.
pub fn wire_bytes(topic: &str, payload: usize) -> u64 {
    let body = 2 + topic.len() + 2 + payload;
    let header = if body < 128 {
        2
    } else if body < 16_384 {
        3
    } else {
        4
    };
    (header + body) as u64
}

/// Node `i`'s name.
pub fn name(i: usize) -> String {
    format!("sim-{i:06}")
}

/// Starts the fleet; it runs until `stop` turns true.
pub fn start(
    host: &str,
    port: u16,
    shape: Shape,
    stop: watch::Receiver<bool>,
) -> (Arc<Record>, tokio::task::JoinSet<()>) {
    let record = Arc::new(Record::new(shape.nodes, shape.hollow.unwrap_or(1).max(1)));
    let gate = Arc::new(Semaphore::new(CONNECTING));
    let mut tasks = tokio::task::JoinSet::new();
    let groups: Vec<Vec<usize>> = match shape.hollow {
        None => (0..shape.nodes).map(|i| vec![i]).collect(),
        Some(m) => (0..shape.nodes)
            .collect::<Vec<_>>()
            .chunks(m.max(1))
            .map(<[usize]>::to_vec)
            .collect(),
    };
    for (c, members) in groups.into_iter().enumerate() {
        let conn = Connection {
            index: c,
            id: match shape.hollow {
                None => name(members[0]),
                Some(_) => format!("sim-hollow-{c:06}"),
            },
            own: shape.hollow.is_none(),
            members,
            record: record.clone(),
            shape,
        };
        tasks.spawn(conn.run(host.to_owned(), port, gate.clone(), stop.clone()));
    }
    (record, tasks)
}

/// One MQTT connection and the nodes it carries.
struct Connection {
    /// Its place in [`Record::links`].
    index: usize,
    id: String,
    /// One node on its own connection: it gets the node's Last Will.
    own: bool,
    members: Vec<usize>,
    record: Arc<Record>,
    shape: Shape,
}

impl Connection {
    async fn run(
        self,
        host: String,
        port: u16,
        gate: Arc<Semaphore>,
        mut stop: watch::Receiver<bool>,
    ) {
        let names: Vec<String> = self.members.iter().map(|i| name(*i)).collect();
        let link = &self.record.links[self.index];
        let mut opts = MqttOptions::new(&self.id, host, port);
        opts.set_clean_session(true)
            .set_keep_alive(Duration::from_secs(15))
            .set_max_packet_size(300 * 1024, 300 * 1024);
        if self.own {
            opts.set_last_will(LastWill::new(
                node_topic(&names[0], NodeTopic::Online),
                encode(&Presence::Offline),
                QoS::AtLeastOnce,
                true,
            ));
        }
        let fetch = self.shape.fetch;
        let kinds: &[NodeTopic] = match fetch {
            true => &[NodeTopic::Desired, NodeTopic::Blob],
            false => &[NodeTopic::Desired],
        };
        let by_topic: HashMap<String, (usize, NodeTopic)> = names
            .iter()
            .enumerate()
            .flat_map(|(k, n)| kinds.iter().map(move |t| (node_topic(n, *t), (k, *t))))
            .collect();
        let base: Vec<(String, Qos)> = names
            .iter()
            .flat_map(|n| kinds.iter().map(|t| (node_topic(n, *t), Qos::AtLeastOnce)))
            .collect();
        let permit = gate.acquire_owned().await.ok();
        let (tx, mut rx) = mpsc::channel(64);
        let queue = 4 * names.len() + 64;
        let session = Session::spawn(opts, queue, base.clone(), BACKOFF, tx);
        let client = session.client().clone();
        let mut permit = permit;
        let mut nodes: Vec<SimNode> = names.iter().map(|_| SimNode::new(fetch)).collect();
        let mut wire = Wire {
            names: &names,
            session: &session,
            base,
            subscribed: BTreeSet::new(),
            record: &self.record,
        };
        let origin = self.record.origin;
        let mut beats = tokio::time::interval(HEARTBEAT);
        beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut fetch_tick = tokio::time::interval(FETCH_TICK);
        fetch_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let beat = encode(&Heartbeat {
            interval_ms: HEARTBEAT.as_millis() as u32,
        });
        let hello = encode(&Presence::Online(SimNode::hello()));
        let mut connected = false;
        // Per member: its announcement and latest status are queued on this connection. A full
        // request queue refuses them; they are sent again at the next beat, as the agent does
        // (a node whose announcement never reached the broker stays unknown to the hub).
        let mut greeted = vec![false; names.len()];
        // Since when the client's request queue has refused every publish: a client that
        // stays connected but sends nothing (its nodes fall silent at the hub for good).
        // (ms since `origin`, plus 1; 0: the last publish was taken)
        let full_since = AtomicU64::new(0);
        let mut stall_reported = false;
        let publish = |topic: String, qos: QoS, retain: bool, payload: Vec<u8>| {
            let bytes = wire_bytes(&topic, payload.len());
            let queued = client.try_publish(topic, qos, retain, payload).is_ok();
            if queued {
                self.record.sent(bytes);
                full_since.store(0, Ordering::Relaxed);
                link.last_taken_ms
                    .store(self.record.ms(), Ordering::Relaxed);
            } else if full_since.load(Ordering::Relaxed) == 0 {
                full_since.store(self.record.ms(), Ordering::Relaxed);
            }
            queued
        };
        let greet = |k: usize, node: &mut SimNode, now: Duration| {
            let n = &names[k];
            publish(
                node_topic(n, NodeTopic::Online),
                QoS::AtLeastOnce,
                true,
                hello.clone(),
            ) && publish(
                node_topic(n, NodeTopic::Status),
                QoS::AtLeastOnce,
                true,
                encode(&node.status_now(now)),
            )
        };
        loop {
            let holding = connected && nodes.iter().any(SimNode::holding);
            tokio::select! {
                _ = stop.changed() => break,
                _ = beats.tick(), if connected => {
                    let since = full_since.load(Ordering::Relaxed);
                    let stalled = Duration::from_millis(self.record.ms().saturating_sub(since));
                    if since > 0
                        && stalled >= STALL_REPORT
                        && !std::mem::replace(&mut stall_reported, true)
                    {
                        eprintln!(
                            "wasmfleet-sim: connection {} ({} to {}) is connected but its client has taken no publish for {} s",
                            self.id,
                            names[0],
                            names[names.len() - 1],
                            stalled.as_secs()
                        );
                    }
                    let now = origin.elapsed();
                    for (k, n) in names.iter().enumerate() {
                        if !greeted[k] {
                            greeted[k] = greet(k, &mut nodes[k], now);
                        }
                        publish(node_topic(n, NodeTopic::Heartbeat), QoS::AtMostOnce, false, beat.clone());
                    }
                }
                _ = fetch_tick.tick(), if fetch && connected => wire.pump(&mut nodes, origin.elapsed()),
                () = tokio::time::sleep(HOLD_POLL), if holding => wire.pump(&mut nodes, origin.elapsed()),
                event = rx.recv() => match event {
                    None => break,
                    Some(SessionEvent::Connected) => {
                        link.connected.store(true, Ordering::Relaxed);
                        if !connected {
                            self.record.connected.fetch_add(names.len() as u64, Ordering::Relaxed);
                        }
                        connected = true;
                        drop(permit.take());
                        let now = origin.elapsed();
                        for (k, n) in names.iter().enumerate() {
                            greeted[k] = greet(k, &mut nodes[k], now);
                            publish(node_topic(n, NodeTopic::Heartbeat), QoS::AtMostOnce, false, beat.clone());
                        }
                        wire.pump(&mut nodes, now);
                    }
                    Some(SessionEvent::Message { topic, payload }) => {
                        link.last_in_ms.store(self.record.ms(), Ordering::Relaxed);
                        self.record.msgs_in.fetch_add(1, Ordering::Relaxed);
                        let bytes = wire_bytes(&topic, payload.len());
                        self.record.bytes_in.fetch_add(bytes, Ordering::Relaxed);
                        let now = origin.elapsed();
                        if let Some((digest, _)) = parse_blob_topic(&topic) {
                            let c = &self.record.blobs;
                            c.fan_out_received.fetch_add(1, Ordering::Relaxed);
                            c.fan_out_received_bytes.fetch_add(bytes, Ordering::Relaxed);
                            let Ok(reply) = decode::<BlobReply>(&payload) else { continue };
                            for (k, node) in nodes.iter_mut().enumerate() {
                                if node.fetching(&digest) {
                                    let ev = node.on_blob(reply.clone(), Route::FanOut, now);
                                    greeted[k] &= self.after_blob(k, &names[k], ev, &publish);
                                }
                            }
                            wire.pump(&mut nodes, now);
                            continue;
                        }
                        let Some(&(k, kind)) = by_topic.get(&topic) else { continue };
                        if kind == NodeTopic::Blob {
                            let c = &self.record.blobs;
                            c.direct_replies.fetch_add(1, Ordering::Relaxed);
                            c.direct_reply_bytes.fetch_add(bytes, Ordering::Relaxed);
                            if let Ok(reply) = decode::<BlobReply>(&payload) {
                                let ev = nodes[k].on_blob(reply, Route::Direct, now);
                                greeted[k] &= self.after_blob(k, &names[k], ev, &publish);
                            }
                            wire.pump(&mut nodes, now);
                            continue;
                        }
                        if self.shape.loss > 0.0 && rand::rng().random_bool(self.shape.loss.min(1.0)) {
                            continue;
                        }
                        if !self.shape.latency.is_zero() {
                            tokio::time::sleep(self.shape.latency).await;
                        }
                        nodes[k].set_fan_out(self.record.fan_out.load(Ordering::Relaxed));
                        if let Some(s) = nodes[k].on_desired(&payload, origin.elapsed()) {
                            self.record.reported(self.members[k], &s);
                            greeted[k] &= publish(node_topic(&names[k], NodeTopic::Status), QoS::AtLeastOnce, true, encode(&s));
                        }
                        wire.pump(&mut nodes, origin.elapsed());
                    }
                    // Beats queued while the connection is down would fill its request
                    // queue and crowd out the announcements when it is back.
                    Some(down @ (SessionEvent::Disconnected(_) | SessionEvent::Closed)) => {
                        if let SessionEvent::Disconnected(e) = down {
                            link.disconnects.fetch_add(1, Ordering::Relaxed);
                            *link.last_error.lock().unwrap_or_else(PoisonError::into_inner) = e;
                        }
                        link.connected.store(false, Ordering::Relaxed);
                        connected = false;
                        full_since.store(0, Ordering::Relaxed);
                        stall_reported = false;
                    }
                },
            }
        }
        for n in &names {
            let _ = client.try_publish(
                node_topic(n, NodeTopic::Online),
                QoS::AtLeastOnce,
                true,
                encode(&Presence::Offline),
            );
        }
        let _ = client.try_disconnect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(session);
    }

    /// Records and publishes what a blob reply did to member `k`; false if a status to send
    /// was not queued.
    fn after_blob(
        &self,
        k: usize,
        name: &str,
        ev: crate::node::BlobEvent,
        publish: &impl Fn(String, QoS, bool, Vec<u8>) -> bool,
    ) -> bool {
        if let Some(size) = ev.fetched {
            self.record.blobs.fetched.fetch_add(1, Ordering::Relaxed);
            self.record
                .blobs
                .artifact_bytes
                .store(size, Ordering::Relaxed);
        }
        if let Some(s) = ev.status {
            self.record.reported(self.members[k], &s);
            return publish(
                node_topic(name, NodeTopic::Status),
                QoS::AtLeastOnce,
                true,
                encode(&s),
            );
        }
        true
    }
}

/// A connection's chunk requests and blob topic subscriptions.
struct Wire<'a> {
    names: &'a [String],
    session: &'a Session,
    /// The connection's own subscriptions (its nodes' `desired` and `blob` topics).
    base: Vec<(String, Qos)>,
    /// Chunk topics subscribed beyond them.
    subscribed: BTreeSet<(Digest, u64)>,
    record: &'a Record,
}

impl Wire<'_> {
    /// Keeps the chunk topics of fan-out fetches subscribed and sends the chunk requests due
    /// (`blob-want` or `blob-req`, as each node's fetcher decides).
    fn pump(&mut self, nodes: &mut [SimNode], now: Duration) {
        self.subscribe(nodes);
        let client = self.session.client();
        let c = &self.record.blobs;
        for (k, node) in nodes.iter_mut().enumerate() {
            let session = self.session;
            for ask in node.poll_blobs(now, |d, c| session.granted(&blob_topic(d, c))) {
                let (kind, counter) = match ask.route {
                    Route::FanOut => (NodeTopic::BlobWant, &c.fan_out_asks),
                    Route::Direct => (NodeTopic::BlobRequest, &c.direct_asks),
                };
                let topic = node_topic(&self.names[k], kind);
                let payload = encode(&ask.request);
                let bytes = wire_bytes(&topic, payload.len());
                counter.fetch_add(1, Ordering::Relaxed);
                c.ask_bytes.fetch_add(bytes, Ordering::Relaxed);
                self.record.sent(bytes);
                if client
                    .try_publish(topic, QoS::AtLeastOnce, false, payload)
                    .is_err()
                {
                    node.unsent(&ask.request);
                }
            }
        }
        self.subscribe(nodes);
    }

    fn subscribe(&mut self, nodes: &[SimNode]) {
        let wanted: BTreeSet<(Digest, u64)> =
            nodes.iter().flat_map(SimNode::fan_out_topics).collect();
        if wanted != self.subscribed {
            let mut filters = self.base.clone();
            filters.extend(
                wanted
                    .iter()
                    .map(|(d, c)| (blob_topic(d, *c), Qos::AtLeastOnce)),
            );
            self.session.set_filters(filters);
            self.subscribed = wanted;
        }
    }
}
