//! What the hub does with what the fleet sends, each off the MQTT loop and off the async
//! workers: presence and status into the controller ([`fleet_ingest`]), log batches into the
//! log store ([`log_writer`]). Chunk requests are answered by [`crate::blob_fanout`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, watch};
use wasmfleet_proto::{LogBatch, MAX_LOG_LINE};

use crate::clock::now_ms;
use crate::controller::handle::Visibility;
use crate::controller::{ControllerHandle, FleetSnapshot};
use crate::mqtt::inbox::{FleetInbox, LogQueue};
use crate::store::{LogRecord, LogStore};

/// Feeds coalesced presence and status to the controller, one change (one scheduler pass at
/// most, one store transaction) per drained batch.
pub async fn fleet_ingest(
    controller: ControllerHandle,
    inbox: Arc<FleetInbox>,
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
                match c.on_fleet(messages, now_ms()) {
                    Ok(publish) => Ok(((), publish)),
                    // The store refused the batch (a full disk): nothing of it was kept. The
                    // hub re-sends what nodes lag behind on, and nodes re-announce themselves
                    // when they reconnect.
                    Err(e) => {
                        tracing::error!("controller: {e}");
                        Err(e)
                    }
                }
            })
            .await;
    }
}

/// How often the hub looks for nodes whose heartbeats stopped.
const LIVENESS_CHECK: Duration = Duration::from_millis(200);
/// How often the hub compares the liveness table with the controller's Ready nodes and
/// re-sends where they differ: the longest a lost flip leaves a node wrong. A comparison at
/// 100,000 nodes takes milliseconds.
pub const RESTATE_EVERY: Duration = Duration::from_secs(5);

/// Declares silent the nodes whose heartbeats stopped ([`crate::reconcile::liveness`]); the
/// flips reach the controller through the inbox like any report. Every [`RESTATE_EVERY`] the
/// flips the controller holds otherwise are sent again.
pub async fn liveness_watch(
    inbox: crate::mqtt::Inbox,
    controller: ControllerHandle,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(LIVENESS_CHECK);
    let mut restate = tokio::time::interval(RESTATE_EVERY);
    restate.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => inbox.expire(now_ms()),
            _ = restate.tick() => restate_liveness(&inbox, &controller, now_ms()),
        }
    }
}

/// One comparison of the liveness table with the controller (through its latest snapshot:
/// no lock on the controller, and a restated flip that the controller already took changes
/// nothing).
pub fn restate_liveness(inbox: &crate::mqtt::Inbox, controller: &ControllerHandle, now_ms: u64) {
    let snapshot = controller.snapshot();
    let ready = snapshot.nodes.iter().map(|(n, r)| (n.as_str(), r.ready));
    let n = inbox.restate(ready, now_ms);
    if n > 0 {
        tracing::debug!("liveness: re-sent {n} flips the controller did not hold");
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
pub async fn log_writer(
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

#[cfg(test)]
mod tests {
    use wasmfleet_proto::{LogLine, Stream, WorkloadSpec};

    use super::*;
    use crate::model::NodeName;
    use crate::scheduler::tests::deployment;

    fn snapshot(placed: &[(&str, WorkloadSpec)]) -> FleetSnapshot {
        let mut s = FleetSnapshot::default();
        for (node, w) in placed {
            let state = Arc::make_mut(&mut s.desired)
                .entry(NodeName::from(*node))
                .or_default();
            let mut workloads = state.workloads.to_vec();
            workloads.push(crate::model::Placed::new(
                w.clone(),
                &mut Default::default(),
            ));
            Arc::make_mut(state).workloads = workloads.into();
        }
        s
    }

    fn batch(workload: &str, line: &str) -> Vec<u8> {
        wasmfleet_proto::encode(&LogBatch {
            lines: vec![LogLine {
                workload: workload.into(),
                stream: Stream::Stdout,
                ts_ms: 1,
                line: line.into(),
            }],
        })
    }

    #[test]
    fn a_node_writes_only_into_the_logs_of_workloads_placed_on_it() {
        let w = deployment("hello", 1).workload_spec(0).unwrap();
        let placed = snapshot(&[("a", w)]);
        let mut attribution = Attribution::default();
        let records = attribution.records(
            &placed,
            vec![
                ("a".into(), batch("hello-0", "mine")),
                ("b".into(), batch("hello-0", "forged by another node")),
                ("a".into(), batch("other-0", "not placed anywhere")),
                ("a".into(), b"garbage".to_vec()),
            ],
            1_000,
        );
        let kept: Vec<_> = records
            .iter()
            .map(|r| (r.node.as_str(), r.line.as_str()))
            .collect();
        assert_eq!(kept, [("a", "mine")]);
        assert_eq!(records[0].deployment, "hello");
        assert_eq!(records[0].stream, "stdout");
    }

    #[test]
    fn last_words_of_a_removed_workload_are_kept_for_a_while() {
        let w = deployment("hello", 1).workload_spec(0).unwrap();
        let mut attribution = Attribution::default();
        attribution.records(
            &snapshot(&[("a", w)]),
            vec![("a".into(), batch("hello-0", "1"))],
            1_000,
        );
        let removed = snapshot(&[]);
        let late = attribution.records(
            &removed,
            vec![("a".into(), batch("hello-0", "2"))],
            1_000 + LATE_LINES_MS - 1,
        );
        assert_eq!(late.len(), 1, "printed just before the stop");
        let later = attribution.records(
            &removed,
            vec![("a".into(), batch("hello-0", "3"))],
            2_000 + LATE_LINES_MS,
        );
        assert!(later.is_empty(), "not forever");
    }

    #[test]
    fn over_long_lines_from_a_node_are_cut() {
        let w = deployment("hello", 1).workload_spec(0).unwrap();
        let long = "é".repeat(MAX_LOG_LINE);
        let records = Attribution::default().records(
            &snapshot(&[("a", w)]),
            vec![("a".into(), batch("hello-0", &long))],
            1,
        );
        assert!(records[0].line.len() <= MAX_LOG_LINE);
    }

    #[test]
    fn liveness_flips_the_controller_lost_are_restated_until_it_agrees() {
        use crate::controller::handle::Visibility;
        use crate::controller::{Config, Controller};
        use crate::mqtt::{FleetMessage, Inbox};
        use crate::store::SqliteStore;

        let (inbox, _, _) = Inbox::new();
        let store = Box::new(SqliteStore::in_memory().unwrap());
        let (controller, _) =
            ControllerHandle::new(Controller::load(store, Config::default(), 0).unwrap());
        let feed = |messages: Vec<FleetMessage>, now| {
            controller
                .change_blocking(Visibility::Now, |c| {
                    c.on_fleet(messages, now).map(|p| ((), p))
                })
                .unwrap();
        };
        let ready = |node: &str| controller.snapshot().nodes[node].ready;
        let hello =
            Arc::unwrap_or_clone(crate::scheduler::tests::node("x", true, 1 << 30, 8).hello);
        for n in ["quiet", "beating"] {
            inbox.presence(
                n.into(),
                wasmfleet_proto::Presence::Online(hello.clone()),
                0,
            );
        }
        feed(inbox.fleet.drain(), 0);
        assert!(ready("quiet") && ready("beating"));

        // Both fall silent; only the flip of "beating" reaches the controller.
        inbox.expire(16_001);
        let only_beating =
            |m: &FleetMessage| matches!(m, FleetMessage::Liveness(f) if f.node == "beating");
        feed(
            inbox
                .fleet
                .drain()
                .into_iter()
                .filter(only_beating)
                .collect(),
            16_001,
        );
        // "beating" beats again, and that flip is lost too.
        let beat = wasmfleet_proto::Heartbeat { interval_ms: 5_000 };
        inbox.heartbeat("beating", beat, 17_000);
        assert_eq!(inbox.fleet.drain().len(), 1);
        assert!(
            ready("quiet") && !ready("beating"),
            "the controller is wrong about both"
        );

        restate_liveness(&inbox, &controller, 18_000);
        feed(inbox.fleet.drain(), 18_000);
        assert!(!ready("quiet"), "silent: no beat for 18 s");
        assert!(ready("beating"), "it beats");
        restate_liveness(&inbox, &controller, 19_000);
        assert!(
            inbox.fleet.drain().is_empty(),
            "nothing more to say once they agree"
        );
    }
}
