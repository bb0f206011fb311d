//! The microcontroller node: from what the gateway relays (desired state, blob chunks) and what
//! its instances do (exit, trap), decide what to fetch, write, start, stop and report. The
//! decisions themselves are `wasmfleet-node`'s, the same code `edge-agent` runs; this adds what
//! only a flash-based, compiler-free device needs: artifacts placed in a flash region and
//! fetched one chunk at a time.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use wasmfleet_node::{Action, Actual, Exit, NodeOffer, RunState, Verdict, WorkloadActual};
use wasmfleet_proto::engine::{MCU_SETTINGS_FINGERPRINT, PULLEY32};
use wasmfleet_proto::link::{Downlink, Uplink};
use wasmfleet_proto::{
    Capacity, DesiredState, DeviceClass, Digest, EngineProfile, Heartbeat, Hello, Label,
    NodeStatus, WorkloadSpec,
};

use crate::artifacts::{ArtifactStore, Extent};
use crate::fetch::{Fetch, Step};

/// The label every microcontroller node carries, for `nodeSelector`.
pub const DEVICE_CLASS_LABEL: &str = "wasmfleet.dev/device-class";
/// wasmtime version the firmware is built with (its artifacts load only into this version).
pub const WASMTIME_VERSION: &str = "50.0.1";
/// After a failed download, wait this long before asking again.
pub const FETCH_RETRY: Duration = Duration::from_secs(5);
/// How often the device says it is alive (the hub's default: NotReady after three missed).
pub const HEARTBEAT: Duration = Duration::from_secs(5);

/// What the board offers; fixed at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// Firmware version, e.g. `0.1.0`.
    pub agent_version: String,
    /// Memory and instance count workloads may use.
    pub capacity: Capacity,
    /// Board labels (e.g. `wasmfleet.dev/board=qemu-mps2-an386`); the device-class label is
    /// added.
    pub labels: Vec<Label>,
    /// Devices offered to modules (`i2c-1`, `gpio:17`).
    pub devices: Vec<String>,
    /// Size of the artifact flash region, bytes.
    pub artifact_region: u32,
    /// Its erase unit, bytes.
    pub sector: u32,
}

/// Something for the board to carry out, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send to the gateway.
    Send(Uplink),
    /// Erase the sectors of this extent of the artifact region.
    Erase(Extent),
    /// Write bytes at this offset of the artifact region (erased before).
    Write {
        /// Region offset.
        offset: u32,
        /// Bytes.
        data: Vec<u8>,
    },
    /// Instantiate and start `spec` from the artifact at `artifact` (report how it ends with
    /// [`Node::on_exit`]).
    Start {
        /// What to run (boxed: the other effects are small).
        spec: Box<WorkloadSpec>,
        /// The verified artifact in the region.
        artifact: Extent,
    },
    /// Stop this workload's instance (calling its `on_stop`) and drop it.
    Stop(String),
    /// Deliver an application message to the instances subscribed to its topic.
    Deliver {
        /// Full topic.
        topic: String,
        /// Payload.
        payload: Vec<u8>,
    },
}

/// The node's state.
#[derive(Debug)]
pub struct Node {
    config: NodeConfig,
    desired: Option<DesiredState>,
    actual: Actual,
    store: ArtifactStore,
    fetch: Option<Fetch>,
    /// Why an artifact is not arriving, and when to try again.
    problems: BTreeMap<Digest, (String, Duration)>,
    last_status: Option<NodeStatus>,
    /// Unix milliseconds at `now` = 0, learnt from the gateway.
    unix_at_zero: Option<u64>,
    filters: Vec<String>,
    /// The name the gateway gave it (empty until the first sync).
    name: String,
    /// When the next heartbeat is due (none before the first sync).
    next_beat: Option<Duration>,
}

impl Node {
    /// A node that has heard nothing yet.
    pub fn new(config: NodeConfig) -> Node {
        let store = ArtifactStore::new(config.artifact_region, config.sector);
        Node {
            config,
            desired: None,
            actual: Actual::default(),
            store,
            fetch: None,
            problems: BTreeMap::new(),
            last_status: None,
            unix_at_zero: None,
            filters: Vec::new(),
            name: String::new(),
            next_beat: None,
        }
    }

    /// The node's name, as its gateway represents it (empty before the gateway said).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the node announces.
    pub fn hello(&self) -> Hello {
        let mut labels = self.config.labels.clone();
        labels.retain(|l| l.key != DEVICE_CLASS_LABEL);
        labels.push(Label {
            key: DEVICE_CLASS_LABEL.into(),
            value: "mcu".into(),
        });
        labels.sort();
        Hello {
            agent_version: self.config.agent_version.clone(),
            device_class: DeviceClass::Mcu,
            capacity: self.config.capacity,
            labels,
            engine: EngineProfile {
                target: PULLEY32.into(),
                cpu_features: Vec::new(),
                wasmtime: WASMTIME_VERSION.into(),
                settings: MCU_SETTINGS_FINGERPRINT,
                compiler: false,
            },
            devices: self.config.devices.clone(),
        }
    }

    fn beat() -> Uplink {
        Uplink::Heartbeat(Heartbeat {
            interval_ms: HEARTBEAT.as_millis() as u32,
        })
    }

    /// Wall-clock milliseconds at `now`, once the gateway said the time (0 before).
    pub fn unix_ms(&self, now: Duration) -> u64 {
        self.unix_at_zero
            .map_or(0, |zero| zero.saturating_add(now.as_millis() as u64))
    }

    /// Handles a message from the gateway.
    pub fn on_link(&mut self, msg: Downlink, now: Duration) -> Vec<Effect> {
        let mut out = Vec::new();
        match msg {
            Downlink::Sync { node, unix_ms } => {
                self.name = node;
                self.unix_at_zero = Some(unix_ms.saturating_sub(now.as_millis() as u64));
                out.push(Effect::Send(Uplink::Hello(self.hello())));
                out.push(Effect::Send(Uplink::AppFilters(self.filters.clone())));
                // A beat right away, so the hub learns the interval with the announcement.
                out.push(Effect::Send(Self::beat()));
                self.next_beat = Some(now + HEARTBEAT);
                // Report again whatever was reported before: the gateway is new.
                self.last_status = None;
            }
            Downlink::Desired(d) => {
                if self.desired.as_ref().is_none_or(|cur| d.supersedes(cur)) {
                    self.desired = Some(d);
                }
            }
            Downlink::Blob(reply) => self.on_blob(reply, now, &mut out),
            Downlink::AppMessage { topic, payload } => {
                out.push(Effect::Deliver { topic, payload });
                return out;
            }
        }
        self.converge(now, &mut out);
        out
    }

    /// An instance ended (exited, trapped, failed to instantiate).
    pub fn on_exit(&mut self, name: &str, exit: Exit, now: Duration) -> Vec<Effect> {
        if let Some(w) = self.actual.workloads.get_mut(name) {
            w.run = RunState::Exited { exit, at: now };
        }
        let mut out = Vec::new();
        self.converge(now, &mut out);
        out
    }

    /// Time passed: re-ask for a lost chunk, restart after back-off, retry failed downloads.
    pub fn tick(&mut self, now: Duration) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.next_beat.is_some_and(|due| now >= due) {
            out.push(Effect::Send(Self::beat()));
            self.next_beat = Some(now + HEARTBEAT);
        }
        if let Some(req) = self.fetch.as_mut().and_then(|f| f.on_tick(now)) {
            out.push(Effect::Send(Uplink::BlobRequest(req)));
        }
        self.converge(now, &mut out);
        out
    }

    /// The application topic filters the node's instances subscribe to now; a message for the
    /// gateway if they changed.
    pub fn app_filters(&mut self, mut filters: Vec<String>) -> Option<Effect> {
        filters.sort();
        filters.dedup();
        if filters == self.filters {
            return None;
        }
        self.filters = filters.clone();
        Some(Effect::Send(Uplink::AppFilters(filters)))
    }

    fn on_blob(&mut self, reply: wasmfleet_proto::BlobReply, now: Duration, out: &mut Vec<Effect>) {
        let Some(fetch) = self.fetch.as_mut() else {
            return;
        };
        match fetch.on_reply(reply, now) {
            Step::Ignore => {}
            Step::Write { offset, data, next } => {
                out.push(Effect::Write { offset, data });
                match next {
                    Some(req) => out.push(Effect::Send(Uplink::BlobRequest(req))),
                    None => {
                        let digest = fetch.digest();
                        self.store.verified(&digest);
                        self.problems.remove(&digest);
                        self.fetch = None;
                    }
                }
            }
            Step::Failed(why) => {
                let digest = fetch.digest();
                self.store.discard(&digest);
                self.problems.insert(digest, (why, now + FETCH_RETRY));
                self.fetch = None;
            }
        }
    }

    fn offer(&self) -> NodeOffer {
        NodeOffer {
            max_workloads: self.config.capacity.max_workloads,
            memory_bytes: self.config.capacity.memory_bytes,
            compiler: false,
        }
    }

    /// Level-triggered: the same inputs give the same effects, whatever came before.
    fn converge(&mut self, now: Duration, out: &mut Vec<Effect>) {
        let Some(desired) = self.desired.clone() else {
            return;
        };
        let verdicts = wasmfleet_node::admit(&desired, &self.offer());
        let wanted: Vec<Digest> = verdicts
            .values()
            .filter_map(Verdict::blob)
            .map(|m| m.digest)
            .collect();
        self.store.retain(|d| wanted.contains(d));
        self.problems.retain(|d, _| wanted.contains(d));
        if self
            .fetch
            .as_ref()
            .is_some_and(|f| !wanted.contains(&f.digest()))
        {
            self.fetch = None;
        }
        let store = &self.store;
        let present = |d: &Digest| store.get(d).is_some();
        let actions = wasmfleet_node::reconcile(&desired, &self.actual, &verdicts, &present, now);
        for action in actions {
            match action {
                Action::Stop(name) => {
                    self.actual.workloads.remove(&name);
                    out.push(Effect::Stop(name));
                }
                Action::Start(spec) | Action::Restart(spec) => {
                    let Some(artifact) = verdicts
                        .get(&spec.name)
                        .and_then(Verdict::blob)
                        .and_then(|m| self.store.get(&m.digest))
                    else {
                        continue;
                    };
                    let next = match self.actual.workloads.get(&spec.name) {
                        Some(prev) if prev.spec == spec => prev.restarted(spec.clone(), now),
                        _ => WorkloadActual::started(spec.clone(), now),
                    };
                    self.actual.workloads.insert(spec.name.clone(), next);
                    out.push(Effect::Start {
                        spec: Box::new(spec),
                        artifact,
                    });
                }
                Action::FetchBlob(module) => self.maybe_fetch(module, now, out),
            }
        }
        let store = &self.store;
        let present = |d: &Digest| store.get(d).is_some();
        let problems = &self.problems;
        let fetch = &self.fetch;
        let problem = |d: &Digest| match fetch.as_ref().filter(|f| f.digest() == *d) {
            Some(f) => Some(alloc::format!(
                "fetching artifact {} ({} bytes received)",
                d.short(),
                f.received()
            )),
            None => problems.get(d).map(|(why, _)| why.clone()),
        };
        let status = wasmfleet_node::status(&desired, &self.actual, &verdicts, &present, &problem);
        if self.last_status.as_ref() != Some(&status) {
            self.last_status = Some(status.clone());
            out.push(Effect::Send(Uplink::Status(status)));
        }
    }

    fn maybe_fetch(
        &mut self,
        module: wasmfleet_proto::ModuleRef,
        now: Duration,
        out: &mut Vec<Effect>,
    ) {
        if self.fetch.is_some() {
            return;
        }
        if let Some((_, retry_at)) = self.problems.get(&module.digest)
            && now < *retry_at
        {
            return;
        }
        let len = u32::try_from(module.size).unwrap_or(u32::MAX);
        match self.store.reserve(module.digest, len) {
            Ok(extent) => {
                let (fetch, req) = Fetch::start(module, extent, now);
                self.fetch = Some(fetch);
                out.push(Effect::Erase(extent));
                out.push(Effect::Send(Uplink::BlobRequest(req)));
            }
            Err(no) => {
                self.problems.insert(
                    module.digest,
                    (
                        alloc::format!(
                            "artifact {} of {} bytes does not fit in this device's {}-byte \
                             artifact flash (with the other workloads' artifacts)",
                            module.digest.short(),
                            module.size,
                            no.region
                        ),
                        now + FETCH_RETRY,
                    ),
                );
            }
        }
    }
}
