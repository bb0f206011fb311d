//! The firmware's main loop, the same on every board: bytes from the gateway link go to the
//! node core ([`wasmfleet_fw_core::Node`]); the effects it returns are carried out here (send,
//! erase and write flash, start and stop instances, deliver messages); instances run their
//! due timers and watched pin edges; output and application messages go back up the link.
//! A board crate's `main` is [`run`] with its [`Hardware`].
#![no_std]

#[doc(hidden)]
pub extern crate alloc;

mod board;
mod hardware;
mod kv;
mod platform;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::RefCell;
use core::time::Duration;

use wasmfleet_fw_core::{Effect, Exit, FlashKv, LogBuffer, Node, NodeConfig};
use wasmfleet_fw_runtime::{Ended, Fuel, Instance, Runtime, Workload, union_filters};
use wasmfleet_proto::link::{self, Downlink, LinkDecoder, Uplink};
use wasmfleet_proto::topic::{app_topic, parse_app_topic};
use wasmfleet_proto::{Capacity, Label, Stream, WorkloadSpec};

pub use hardware::{BoardI2c, Hardware};
use platform::{NodePlatform, Shared};

/// Bytes of workload output buffered between flushes.
const LOG_BUDGET: usize = 2048;
/// How often output is flushed and the core ticks.
const TICK_MS: u64 = 100;
/// How often heap use goes to the debug console.
const HEAP_REPORT_MS: u64 = 30_000;

/// What the board offers workloads.
#[derive(Debug, Clone, Copy)]
pub struct Offer {
    /// Memory for all workloads' linear memories, bytes.
    pub memory_bytes: u64,
    /// Most instances at once.
    pub max_workloads: u32,
}

type Running<H> = BTreeMap<String, Instance<NodePlatform<H>>>;

/// Runs the node forever on `hw`.
pub fn run<H: Hardware + 'static>(hw: H, offer: Offer) -> ! {
    let config = NodeConfig {
        agent_version: env!("CARGO_PKG_VERSION").into(),
        capacity: Capacity {
            memory_bytes: offer.memory_bytes,
            max_workloads: offer.max_workloads,
        },
        labels: alloc::vec![Label {
            key: "wasmfleet.dev/board".into(),
            value: H::BOARD.into(),
        }],
        devices: hw.devices(),
        artifact_region: hw.flash_len().saturating_sub(kv::KV_REGION),
        sector: hw.flash_sector(),
    };
    let mut hw = hw;
    let kv_base = config.artifact_region;
    let sector = hw.flash_sector();
    let kv = match FlashKv::open(
        &mut kv::KvPart {
            hw: &mut hw,
            base: kv_base,
        },
        kv::KV_REGION,
        sector,
    ) {
        Ok(kv) => Some(kv),
        Err(e) => {
            hw.debug(&format!(
                "key-value flash unreadable ({e:?}): modules using KV refused"
            ));
            None
        }
    };
    let shared = Rc::new(RefCell::new(Shared {
        hw,
        logs: LogBuffer::new(LOG_BUDGET),
        outbox: Vec::new(),
        kv,
        kv_base,
        unix_at_boot: 0,
        watched: BTreeMap::new(),
    }));
    let runtime = match Runtime::new() {
        Ok(rt) => rt,
        Err(e) => panic!("wasmtime engine: {e}"),
    };
    let mut node = Node::new(config);
    let mut running: Running<H> = BTreeMap::new();
    let mut decoder = LinkDecoder::new();
    // Announce at boot: a gateway that kept its link (a serial line) learns of the reset and
    // sends the desired state again.
    send(&shared, &Uplink::Hello(node.hello()));
    let mut buf = [0u8; 256];
    let mut next_tick = 0;
    let mut next_heap_report = HEAP_REPORT_MS;
    loop {
        let now = shared.borrow().hw.now_ms();
        loop {
            let n = shared.borrow_mut().hw.link_read(&mut buf);
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                match decoder.push::<Downlink>(b) {
                    Some(Ok(msg)) => {
                        if let Downlink::Sync { unix_ms, .. } = &msg {
                            shared.borrow_mut().unix_at_boot = unix_ms.saturating_sub(now);
                        }
                        let effects = node.on_link(msg, ms(now));
                        apply(&shared, &runtime, &mut node, &mut running, effects);
                    }
                    Some(Err(e)) => debug(&shared, &format!("link: {e}")),
                    None => {}
                }
            }
        }
        run_due(&shared, &mut node, &mut running, now);
        if now >= next_tick {
            next_tick = now + TICK_MS;
            let effects = node.tick(ms(now));
            apply(&shared, &runtime, &mut node, &mut running, effects);
            sync_filters(&shared, &mut node, &running);
            flush(&shared, &node, now);
        }
        if now >= next_heap_report {
            next_heap_report = now + HEAP_REPORT_MS;
            report_heap(&shared, "heap", running.len());
        }
        let deadline = running
            .values()
            .filter_map(Instance::next_deadline)
            .chain([next_tick])
            .min()
            .unwrap_or(next_tick);
        shared.borrow().hw.sleep_until(deadline);
    }
}

fn ms(now: u64) -> Duration {
    Duration::from_millis(now)
}

fn send<H: Hardware>(shared: &Rc<RefCell<Shared<H>>>, up: &Uplink) {
    shared.borrow_mut().hw.link_write(&link::encode(up));
}

fn debug<H: Hardware>(shared: &Rc<RefCell<Shared<H>>>, line: &str) {
    shared.borrow_mut().hw.debug(line);
}

/// Carries out the core's effects in order; instance ends feed back into the core.
fn apply<H: Hardware + 'static>(
    shared: &Rc<RefCell<Shared<H>>>,
    runtime: &Runtime,
    node: &mut Node,
    running: &mut Running<H>,
    effects: Vec<Effect>,
) {
    let mut queue: Vec<Effect> = effects;
    while !queue.is_empty() {
        let mut next = Vec::new();
        for effect in queue {
            match effect {
                Effect::Send(up) => send(shared, &up),
                Effect::Erase(extent) => {
                    let mut s = shared.borrow_mut();
                    let sector = s.hw.flash_sector();
                    let len = extent.len.div_ceil(sector).max(1) * sector;
                    if let Err(e) = s.hw.flash_erase(extent.offset, len) {
                        s.hw.debug(&format!("flash erase: {e}"));
                    }
                }
                Effect::Write { offset, data } => {
                    let mut s = shared.borrow_mut();
                    // NOR writes whole words: pad the tail with erased bytes.
                    let mut padded = data;
                    while padded.len() % 4 != 0 {
                        padded.push(0xff);
                    }
                    if let Err(e) = s.hw.flash_write(offset, &padded) {
                        s.hw.debug(&format!("flash write: {e}"));
                    }
                }
                Effect::Start { spec, artifact } => {
                    let now = shared.borrow().hw.now_ms();
                    let name = spec.name.clone();
                    if let Some(prev) = running.remove(&name) {
                        drop(prev);
                    }
                    match start(shared, runtime, node.name(), &spec, artifact, now) {
                        Ok(instance) => {
                            running.insert(name.clone(), instance);
                            report_heap(shared, &format!("{name} started"), running.len());
                        }
                        Err(exit) => {
                            agent_line(shared, &name, &exit.message);
                            next.extend(node.on_exit(&name, exit, ms(now)));
                        }
                    }
                }
                Effect::Stop(name) => {
                    if let Some(mut instance) = running.remove(&name) {
                        let ended = instance.stop();
                        if !ended.is_success() {
                            agent_line(shared, &name, &format!("on_stop: {ended}"));
                        }
                        drop(instance);
                        report_heap(shared, &format!("{name} stopped"), running.len());
                    }
                }
                Effect::Deliver { topic, payload } => {
                    let now = shared.borrow().hw.now_ms();
                    let Some((ns, relative)) = parse_app_topic(&topic) else {
                        continue;
                    };
                    let mut ended = Vec::new();
                    for (name, instance) in running.iter_mut() {
                        if instance.workload().namespace != ns {
                            continue;
                        }
                        if let Err(e) = instance.deliver_message(relative, &payload) {
                            ended.push((name.clone(), e));
                        }
                    }
                    for (name, e) in ended {
                        next.extend(finish(shared, node, running, &name, e, now));
                    }
                }
            }
        }
        queue = next;
    }
}

/// Loads the artifact in place from flash and starts an instance of `spec`.
fn start<H: Hardware + 'static>(
    shared: &Rc<RefCell<Shared<H>>>,
    runtime: &Runtime,
    node_name: &str,
    spec: &WorkloadSpec,
    artifact: wasmfleet_fw_core::Extent,
    now: u64,
) -> Result<Instance<NodePlatform<H>>, Exit> {
    let fail = |what: &str, e: &dyn core::fmt::Display| Exit::failure(None, format!("{what}: {e}"));
    // SAFETY: the core verified these bytes' SHA-256 against the digest the hub named while
    // writing them, and erases an extent only after every workload using it has stopped
    // (stops come first in its effects), so the slice outlives the module.
    let module = unsafe {
        let bytes = shared
            .borrow()
            .hw
            .flash_mapped(artifact.offset, artifact.len)
            .map_err(|e| fail("artifact flash", &e))?;
        wasmfleet_fw_runtime::load_static(runtime, bytes).map_err(|e| fail("load", &e))?
    };
    let workload = Workload::from_spec(node_name, spec, Fuel::default());
    let platform = NodePlatform::new(shared, &spec.capabilities.i2c);
    let mut instance =
        Instance::new(runtime, &module, workload, platform).map_err(|e| fail("instantiate", &e))?;
    instance.start(now).map_err(|e| ended_exit(&e))?;
    Ok(instance)
}

/// The core's view of an instance end.
fn ended_exit(e: &Ended) -> Exit {
    match e {
        Ended::Exited(code) if *code != 0 => {
            Exit::failure(Some(*code), format!("exited with code {code}"))
        }
        e if e.is_success() => Exit::success(),
        e => Exit::failure(e.exit_code(), e.to_string()),
    }
}

fn finish<H: Hardware>(
    shared: &Rc<RefCell<Shared<H>>>,
    node: &mut Node,
    running: &mut Running<H>,
    name: &str,
    ended: Ended,
    now: u64,
) -> Vec<Effect> {
    running.remove(name);
    if !ended.is_success() {
        agent_line(shared, name, &ended.to_string());
    }
    node.on_exit(name, ended_exit(&ended), ms(now))
}

/// A line about a workload from the firmware itself (stream `agent`).
fn agent_line<H: Hardware>(shared: &Rc<RefCell<Shared<H>>>, workload: &str, line: &str) {
    let mut s = shared.borrow_mut();
    let ts = s.unix_at_boot.saturating_add(s.hw.now_ms());
    s.logs.push(workload, Stream::Agent, ts, line);
}

/// Fires due timers and delivers watched pins' edges.
fn run_due<H: Hardware + 'static>(
    shared: &Rc<RefCell<Shared<H>>>,
    node: &mut Node,
    running: &mut Running<H>,
    now: u64,
) {
    let edges: Vec<(u32, bool)> = {
        let mut s = shared.borrow_mut();
        let pins: Vec<u32> = s.watched.keys().copied().collect();
        let mut edges = Vec::new();
        for pin in pins {
            if let Ok(level) = s.hw.gpio_read(pin)
                && let Some(entry) = s.watched.get_mut(&pin)
                && entry.0 != level
            {
                entry.0 = level;
                edges.push((pin, level));
            }
        }
        edges
    };
    let mut ended = Vec::new();
    for (name, instance) in running.iter_mut() {
        let mut result = instance.fire_due_timers(now).map(|_| ());
        for &(pin, level) in &edges {
            if result.is_ok() {
                result = instance.deliver_gpio(pin, level).map(|_| ());
            }
        }
        if let Err(e) = result {
            ended.push((name.clone(), e));
        }
    }
    for (name, e) in ended {
        let effects = finish(shared, node, running, &name, e, now);
        // Restarts wait for back-off, so these are status reports, never starts.
        for effect in effects {
            if let Effect::Send(up) = effect {
                send(shared, &up);
            }
        }
    }
}

/// Tells the gateway which application filters the instances hold now.
fn sync_filters<H: Hardware>(
    shared: &Rc<RefCell<Shared<H>>>,
    node: &mut Node,
    running: &Running<H>,
) {
    let mut by_ns: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for instance in running.values() {
        by_ns
            .entry(instance.workload().namespace.as_str())
            .or_default()
            .extend(instance.subscriptions());
    }
    let filters: Vec<String> = by_ns
        .into_iter()
        .flat_map(|(ns, subs)| {
            union_filters(subs)
                .into_iter()
                .map(move |f| app_topic(ns, f))
        })
        .collect();
    if let Some(Effect::Send(up)) = node.app_filters(filters) {
        send(shared, &up);
    }
}

/// Heap use on the debug console: what a module costs the device, and the high-water mark.
fn report_heap<H: Hardware>(shared: &Rc<RefCell<Shared<H>>>, what: &str, instances: usize) {
    let (used, peak) = shared.borrow().hw.heap_used_peak();
    debug(
        shared,
        &format!("{what}: {instances} instance(s), heap {used} B in use, peak {peak} B"),
    );
}

/// Sends buffered output and application messages.
fn flush<H: Hardware>(shared: &Rc<RefCell<Shared<H>>>, node: &Node, now: u64) {
    let (batch, outbox) = {
        let mut s = shared.borrow_mut();
        (
            s.logs.take(node.unix_ms(ms(now))),
            core::mem::take(&mut s.outbox),
        )
    };
    if let Some(batch) = batch {
        send(shared, &Uplink::Logs(batch));
    }
    for up in outbox {
        send(shared, &up);
    }
}
