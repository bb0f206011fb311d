//! The simulated nodes on the wire: each on its own MQTT connection (as real agents are, with
//! its Last Will), or hollow (many nodes multiplexed over a few connections, for fleets larger
//! than one machine's ports). Both drive [`SimNode`] and record when each node first reports
//! the deployment under test Running.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rand::Rng;
use rumqttc::{LastWill, MqttOptions, QoS};
use tokio::sync::{Semaphore, mpsc, watch};
use wasmfleet_common::mqtt::{Backoff, Session, SessionEvent};
use wasmfleet_common::subscribe::Qos;
use wasmfleet_proto::topic::{NodeTopic, node_topic};
use wasmfleet_proto::{Heartbeat, NodeStatus, Presence, encode};

use crate::node::{SimNode, runs};

/// How often simulated nodes beat (the agents' default).
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// Connection handshakes in flight at once: a listen backlog is finite.
const CONNECTING: usize = 256;
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
}

/// What the nodes did, shared with the driver.
#[derive(Debug)]
pub struct Record {
    /// When the run's clock started.
    pub origin: Instant,
    /// Per node: ms since `origin` + 1 when it first reported the deployment Running (0: not
    /// yet).
    pub converged: Vec<AtomicU64>,
    /// The deployment whose convergence is measured, once applied.
    pub deployment: OnceLock<String>,
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
}

impl Record {
    fn new(nodes: usize) -> Record {
        Record {
            origin: Instant::now(),
            converged: (0..nodes).map(|_| AtomicU64::new(0)).collect(),
            deployment: OnceLock::new(),
            connected: AtomicU64::new(0),
            msgs_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            msgs_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
        }
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

    fn sent(&self, topic: &str, payload: usize) {
        self.msgs_out.fetch_add(1, Ordering::Relaxed);
        self.bytes_out
            .fetch_add(wire_bytes(topic, payload), Ordering::Relaxed);
    }

    fn reported(&self, index: usize, status: &NodeStatus) {
        let Some(d) = self.deployment.get() else {
            return;
        };
        if runs(status, d) {
            let at = self.origin.elapsed().as_millis() as u64 + 1;
            let _ =
                self.converged[index].compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

/// Bytes of an MQTT 3.1.1 PUBLISH: fixed header (2, more for long ones), topic length (2),
/// topic, packet id (2, QoS 1), payload.
fn wire_bytes(topic: &str, payload: usize) -> u64 {
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
    let record = Arc::new(Record::new(shape.nodes));
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
        let filters: Vec<(String, Qos)> = names
            .iter()
            .map(|n| (node_topic(n, NodeTopic::Desired), Qos::AtLeastOnce))
            .collect();
        let permit = gate.acquire_owned().await.ok();
        let (tx, mut rx) = mpsc::channel(64);
        let queue = 4 * names.len() + 64;
        let session = Session::spawn(opts, queue, filters, BACKOFF, tx);
        let client = session.client().clone();
        let mut permit = permit;
        let by_topic: HashMap<String, usize> = names
            .iter()
            .enumerate()
            .map(|(k, n)| (node_topic(n, NodeTopic::Desired), k))
            .collect();
        let mut nodes: Vec<SimNode> = names.iter().map(|_| SimNode::new()).collect();
        let origin = self.record.origin;
        let mut beats = tokio::time::interval(HEARTBEAT);
        beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let beat = encode(&Heartbeat {
            interval_ms: HEARTBEAT.as_millis() as u32,
        });
        let hello = encode(&Presence::Online(SimNode::hello()));
        let mut connected = false;
        let publish = |topic: String, qos: QoS, retain: bool, payload: Vec<u8>| {
            self.record.sent(&topic, payload.len());
            let _ = client.try_publish(topic, qos, retain, payload);
        };
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = beats.tick(), if connected => {
                    for n in &names {
                        publish(node_topic(n, NodeTopic::Heartbeat), QoS::AtMostOnce, false, beat.clone());
                    }
                }
                event = rx.recv() => match event {
                    None => break,
                    Some(SessionEvent::Connected) => {
                        if !connected {
                            self.record.connected.fetch_add(names.len() as u64, Ordering::Relaxed);
                        }
                        connected = true;
                        drop(permit.take());
                        let now = origin.elapsed();
                        for (k, n) in names.iter().enumerate() {
                            publish(node_topic(n, NodeTopic::Online), QoS::AtLeastOnce, true, hello.clone());
                            publish(node_topic(n, NodeTopic::Heartbeat), QoS::AtMostOnce, false, beat.clone());
                            let s = nodes[k].status_now(now);
                            publish(node_topic(n, NodeTopic::Status), QoS::AtLeastOnce, true, encode(&s));
                        }
                    }
                    Some(SessionEvent::Message { topic, payload }) => {
                        self.record.msgs_in.fetch_add(1, Ordering::Relaxed);
                        self.record.bytes_in.fetch_add(wire_bytes(&topic, payload.len()), Ordering::Relaxed);
                        let Some(&k) = by_topic.get(&topic) else { continue };
                        if self.shape.loss > 0.0 && rand::rng().random_bool(self.shape.loss.min(1.0)) {
                            continue;
                        }
                        if !self.shape.latency.is_zero() {
                            tokio::time::sleep(self.shape.latency).await;
                        }
                        if let Some(s) = nodes[k].on_desired(&payload, origin.elapsed()) {
                            self.record.reported(self.members[k], &s);
                            publish(node_topic(&names[k], NodeTopic::Status), QoS::AtLeastOnce, true, encode(&s));
                        }
                    }
                    Some(SessionEvent::Disconnected(_) | SessionEvent::Closed) => {}
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
}
