//! One simulated node: the real agent's decision logic (`wasmfleet-node` admission, reconcile
//! and status) with instances that start at once, and either every module already on disk
//! (the "cached module" case) or modules fetched over MQTT by the agent's own chunk fetcher
//! (`edge_agent::blobs::Fetcher`), hashed as they arrive and verified, kept in memory only. No
//! wasmtime, no disk: what is left is the protocol work a node does.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use edge_agent::blobs::{Ask, Fetcher, ReplyOutcome, Route};
use wasmfleet_common::digest::Hasher;
use wasmfleet_node::admission::{NodeOffer, admit};
use wasmfleet_node::reconcile::{Action, Actual, WorkloadActual, reconcile, status};
use wasmfleet_proto::{
    BlobReply, BlobRequest, Capacity, DesiredState, DeviceClass, Digest, Hello, Label, NodeStatus,
    Phase, decode,
};

/// Capacity every simulated node announces.
const OFFER: NodeOffer = NodeOffer {
    max_workloads: 32,
    memory_bytes: 1 << 30,
    compiler: false,
};

/// A simulated node's state.
#[derive(Debug)]
pub struct SimNode {
    desired: DesiredState,
    actual: Actual,
    last_status: Option<NodeStatus>,
    /// `None`: every module is cached.
    blobs: Option<Blobs>,
}

/// Modules fetched over MQTT.
#[derive(Debug, Default)]
struct Blobs {
    fetcher: Fetcher,
    /// Fetched and verified.
    held: HashSet<Digest>,
    /// Bytes hashed so far, per blob being fetched.
    hashing: HashMap<Digest, (u64, Hasher)>,
}

/// What a blob reply did.
#[derive(Debug, Default)]
pub struct BlobEvent {
    /// The status to publish, if it changed.
    pub status: Option<NodeStatus>,
    /// A module of this many bytes was completed and verified.
    pub fetched: Option<u64>,
}

impl SimNode {
    /// A node that has run nothing yet; `fetch`: it holds no module and fetches what its
    /// desired state names.
    pub fn new(fetch: bool) -> SimNode {
        SimNode {
            desired: DesiredState::default(),
            actual: Actual::default(),
            last_status: None,
            blobs: fetch.then(Blobs::default),
        }
    }

    /// Whether transfers started from now on fan out (`blob-want`) or ask per node.
    pub fn set_fan_out(&mut self, on: bool) {
        if let Some(b) = &mut self.blobs {
            b.fetcher.set_fan_out(on);
        }
    }

    /// The chunk requests due at `now` (`granted`: whether a chunk's topic is subscribed).
    pub fn poll_blobs(
        &mut self,
        now: Duration,
        granted: impl Fn(&Digest, u64) -> bool,
    ) -> Vec<Ask> {
        match &mut self.blobs {
            Some(b) => b.fetcher.poll(now, granted),
            None => vec![],
        }
    }

    /// A request from [`SimNode::poll_blobs`] could not be queued.
    pub fn unsent(&mut self, req: &BlobRequest) {
        if let Some(b) = &mut self.blobs {
            b.fetcher.unsent(req);
        }
    }

    /// The chunks `(blob, chunk number)` whose fleet-wide topics this node needs subscribed.
    pub fn fan_out_topics(&self) -> impl Iterator<Item = (Digest, u64)> + '_ {
        self.blobs.iter().flat_map(|b| b.fetcher.fan_out_topics())
    }

    /// Whether requests wait for a chunk topic subscription (poll again soon).
    pub fn holding(&self) -> bool {
        self.blobs.as_ref().is_some_and(|b| b.fetcher.holding())
    }

    /// Whether the node is fetching `digest`.
    pub fn fetching(&self, digest: &Digest) -> bool {
        self.blobs
            .as_ref()
            .is_some_and(|b| b.fetcher.is_fetching(digest))
    }

    /// A blob reply that came by `route`: hashed as it is appended; a complete module is
    /// verified, held, and the node converges.
    pub fn on_blob(&mut self, reply: BlobReply, route: Route, now: Duration) -> BlobEvent {
        let Some(b) = &mut self.blobs else {
            return BlobEvent::default();
        };
        let (digest, offset, data, complete) = match b.fetcher.on_reply(reply, route, now) {
            ReplyOutcome::Ignored => return BlobEvent::default(),
            ReplyOutcome::NotFound(d) => {
                b.hashing.remove(&d);
                return BlobEvent::default();
            }
            ReplyOutcome::Append {
                digest,
                offset,
                data,
                complete,
            } => (digest, offset, data, complete),
        };
        let (hashed, hasher) = b.hashing.entry(digest).or_default();
        if offset == 0 {
            (*hashed, *hasher) = (0, Hasher::new());
        }
        if offset != *hashed {
            b.hashing.remove(&digest);
            b.fetcher.failed(&digest, "chunks out of order".into(), now);
            return BlobEvent::default();
        }
        hasher.update(&data);
        *hashed += data.len() as u64;
        if !complete {
            return BlobEvent::default();
        }
        let (size, hasher) = b.hashing.remove(&digest).unwrap_or_default();
        if hasher.finish() != digest {
            b.fetcher.failed(&digest, "digest mismatch".into(), now);
            return BlobEvent::default();
        }
        b.fetcher.finished(&digest);
        b.held.insert(digest);
        BlobEvent {
            status: self.converge(now),
            fetched: Some(size),
        }
    }

    /// What it announces: a Linux node of this machine's engine profile, so the hub sends it
    /// the artifact it compiled for its own architecture.
    pub fn hello() -> Hello {
        Hello {
            agent_version: concat!("sim-", env!("CARGO_PKG_VERSION")).into(),
            device_class: DeviceClass::Linux,
            capacity: Capacity {
                memory_bytes: OFFER.memory_bytes,
                max_workloads: OFFER.max_workloads,
            },
            labels: vec![Label {
                key: "wasmfleet.dev/simulated".into(),
                value: "true".into(),
            }],
            engine: wasmfleet_common::engine::host_profile(false),
            devices: vec![],
        }
    }

    /// A desired-state payload arrived: takes it if it supersedes the one held, converges,
    /// and returns the status to publish if it changed. Undecodable input is ignored.
    pub fn on_desired(&mut self, payload: &[u8], now: Duration) -> Option<NodeStatus> {
        let state: DesiredState = decode(payload).ok()?;
        if !state.supersedes(&self.desired) {
            return None;
        }
        self.desired = state;
        self.converge(now)
    }

    /// The status to publish now, even if it did not change (after a reconnect).
    pub fn status_now(&mut self, now: Duration) -> NodeStatus {
        self.last_status = None;
        if let Some(b) = &mut self.blobs {
            b.fetcher.reset_outstanding();
        }
        self.converge(now).unwrap_or_default()
    }

    fn converge(&mut self, now: Duration) -> Option<NodeStatus> {
        let verdicts = admit(&self.desired, &OFFER);
        let blobs = &self.blobs;
        let has = |d: &Digest| blobs.as_ref().is_none_or(|b| b.held.contains(d));
        let actions = reconcile(&self.desired, &self.actual, &verdicts, &has, now);
        for action in actions {
            match action {
                Action::FetchBlob(module) => {
                    if let Some(b) = &mut self.blobs {
                        b.fetcher.want(module, 0);
                    }
                }
                Action::Start(spec) => {
                    let w = WorkloadActual::started(spec, now);
                    self.actual.workloads.insert(w.spec.name.clone(), w);
                }
                Action::Restart(spec) => {
                    if let Some(old) = self.actual.workloads.get(&spec.name) {
                        let w = old.restarted(spec, now);
                        self.actual.workloads.insert(w.spec.name.clone(), w);
                    }
                }
                Action::Stop(name) => {
                    self.actual.workloads.remove(&name);
                }
            }
        }
        let blobs = &self.blobs;
        let has = |d: &Digest| blobs.as_ref().is_none_or(|b| b.held.contains(d));
        let problem = |d: &Digest| blobs.as_ref().and_then(|b| b.fetcher.problem(d));
        let s = status(&self.desired, &self.actual, &verdicts, &has, &problem);
        if self.last_status.as_ref() == Some(&s) {
            return None;
        }
        self.last_status = Some(s.clone());
        Some(s)
    }
}

/// Whether `status` shows a workload of `deployment` Running.
pub fn runs(status: &NodeStatus, deployment: &str) -> bool {
    status.workloads.iter().any(|w| {
        w.phase == Phase::Running
            && w.name
                .rsplit_once('-')
                .is_some_and(|(d, _)| d == deployment)
    })
}

#[cfg(test)]
mod tests {
    use wasmfleet_proto::{Code, Limits, ModuleRef, RestartPolicy, WorkloadSpec, encode};

    use super::*;

    fn state(generation: u64) -> DesiredState {
        state_of(
            generation,
            ModuleRef {
                digest: wasmfleet_proto::Digest([7; 32]),
                size: 10,
            },
        )
    }

    fn state_of(generation: u64, module: ModuleRef) -> DesiredState {
        DesiredState {
            fleet: 1,
            generation,
            workloads: vec![WorkloadSpec {
                name: "probe-0a1b2c3d".into(),
                deployment: "probe".into(),
                revision: 1,
                module,
                args: vec![],
                env: vec![],
                limits: Limits {
                    memory_bytes: 1 << 20,
                    cpu_millis: None,
                    max_run_ms: None,
                },
                restart: RestartPolicy::Always,
                code: Code::Precompiled(module),
                namespace: "default".into(),
                config: vec![],
                capabilities: Default::default(),
            }],
        }
    }

    #[test]
    fn a_desired_state_runs_at_once_and_stale_ones_change_nothing() {
        let mut n = SimNode::new(false);
        let s = n.on_desired(&encode(&state(2)), Duration::ZERO).unwrap();
        assert_eq!(s.observed_generation, 2);
        assert!(runs(&s, "probe"));
        assert!(n.on_desired(&encode(&state(1)), Duration::ZERO).is_none());
        assert!(n.on_desired(b"garbage", Duration::ZERO).is_none());
        assert_eq!(n.status_now(Duration::ZERO).observed_generation, 2);
    }

    #[test]
    fn a_fetching_node_runs_a_module_only_once_it_is_whole_and_verified() {
        let bytes: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        let module = ModuleRef {
            digest: wasmfleet_common::digest::sha256(&bytes),
            size: bytes.len() as u64,
        };
        let now = Duration::ZERO;
        let mut n = SimNode::new(true);
        let s = n.on_desired(&encode(&state_of(1, module)), now).unwrap();
        assert!(!runs(&s, "probe"), "nothing held yet");
        assert_eq!(n.fan_out_topics().count(), 2, "both chunks' topics");
        assert!(n.poll_blobs(now, |_, _| false).is_empty());
        assert!(n.holding());
        let asks = n.poll_blobs(now, |_, _| true);
        assert_eq!(asks.len(), 2);
        let reply = |a: &Ask, data: &[u8]| BlobReply::Chunk {
            digest: module.digest,
            offset: a.request.offset,
            total: module.size,
            data: data.to_vec(),
        };
        let split = asks[1].request.offset as usize;
        let ev = n.on_blob(reply(&asks[1], &bytes[split..]), Route::FanOut, now);
        assert!(ev.status.is_none() && ev.fetched.is_none());
        // A corrupted first chunk: whole, but not the module.
        let mut bad = bytes[..split].to_vec();
        bad[0] ^= 1;
        let ev = n.on_blob(reply(&asks[0], &bad), Route::FanOut, now);
        assert!(ev.fetched.is_none(), "digest mismatch");
        assert!(n.fetching(&module.digest), "retried later");
        // After the retry delay it is fetched again, and this time right.
        let later = edge_agent::blobs::RETRY_AFTER;
        let asks = n.poll_blobs(later, |_, _| true);
        n.on_blob(reply(&asks[1], &bytes[split..]), Route::FanOut, later);
        let ev = n.on_blob(reply(&asks[0], &bytes[..split]), Route::FanOut, later);
        assert_eq!(ev.fetched, Some(module.size));
        assert!(runs(&ev.status.unwrap(), "probe"));
        assert_eq!(n.fan_out_topics().count(), 0, "unsubscribed");
    }
}
