use wasmfleet_proto::{DesiredState, Phase, Presence, WorkloadStatus};

use super::*;
use crate::model::deployment::tests::spec;
use crate::mqtt::FleetMessage;
use crate::reconcile::liveness::Flip;
use crate::scheduler::tests::node;
use crate::store::SqliteStore;

fn controller() -> Controller {
    Controller::load(
        Box::new(SqliteStore::in_memory().unwrap()),
        Config {
            not_ready_grace_ms: 10_000,
        },
        0,
    )
    .unwrap()
}

/// A controller over the store file at `path`, as a hub (re)starting at `now` loads it.
fn reopen(path: &std::path::Path, now: u64) -> Controller {
    Controller::load(
        Box::new(SqliteStore::open(path).unwrap()),
        Config::default(),
        now,
    )
    .unwrap()
}

fn online(c: &mut Controller, name: &str, now: u64) -> Vec<Publish> {
    c.on_presence(
        name,
        Presence::Online(Arc::unwrap_or_clone(node(name, true, 1 << 30, 8).hello)),
        now,
    )
    .unwrap()
}

fn decode_desired(p: &Publish) -> DesiredState {
    wasmfleet_proto::decode(&p.payload).unwrap()
}

#[test]
fn apply_places_publishes_and_reapply_is_a_no_op() {
    let mut c = controller();
    online(&mut c, "a", 1);
    online(&mut c, "b", 1);
    let (outcome, generation, publish) = c.apply("hello", spec(2), 2).unwrap();
    assert_eq!((outcome, generation), (ApplyOutcome::Created, 1));
    assert_eq!(publish.len(), 2);
    assert!(
        publish
            .iter()
            .all(|p| p.retain && p.topic.ends_with("/desired"))
    );
    assert_eq!(decode_desired(&publish[0]).workloads.len(), 1);

    let (outcome, _, publish) = c.apply("hello", spec(2), 3).unwrap();
    assert_eq!(outcome, ApplyOutcome::Unchanged);
    assert!(publish.is_empty());

    let mut changed = spec(2);
    changed.args = vec!["--count".into(), "3".into()];
    let (outcome, generation, publish) = c.apply("hello", changed, 4).unwrap();
    assert_eq!((outcome, generation), (ApplyOutcome::Configured, 2));
    assert_eq!(publish.len(), 2);
    assert_eq!(decode_desired(&publish[0]).workloads[0].revision, 2);
}

#[test]
fn delete_empties_the_nodes() {
    let mut c = controller();
    online(&mut c, "a", 1);
    c.apply("hello", spec(1), 2).unwrap();
    let publish = c.delete("hello", 3).unwrap();
    assert_eq!(publish.len(), 1);
    assert!(decode_desired(&publish[0]).workloads.is_empty());
    assert!(matches!(
        c.delete("hello", 4),
        Err(ControllerError::NotFound(_))
    ));
}

#[test]
fn pending_replicas_land_when_a_node_joins() {
    let mut c = controller();
    let (_, _, publish) = c.apply("hello", spec(1), 1).unwrap();
    assert!(publish.is_empty());
    assert_eq!(
        c.snapshot().workload_views(None)[0].message,
        "0/0 nodes fit: no nodes"
    );
    let publish = online(&mut c, "a", 2);
    assert_eq!(decode_desired(&publish[0]).workloads[0].name, "hello-0");
}

#[test]
fn lost_node_moves_its_replicas_after_the_grace_period() {
    let mut c = controller();
    online(&mut c, "a", 0);
    c.apply("hello", spec(1), 0).unwrap();
    online(&mut c, "b", 0);
    c.on_presence("a", Presence::Offline, 1_000).unwrap();
    assert!(
        c.tick(5_000).unwrap().is_empty(),
        "within grace nothing moves"
    );
    assert_eq!(c.snapshot().workload_views(None)[0].phase, "Unknown");
    let publish = c.tick(12_000).unwrap();
    let topics: Vec<_> = publish.iter().map(|p| p.topic.as_str()).collect();
    assert_eq!(topics, ["wf/v1/n/a/desired", "wf/v1/n/b/desired"]);
}

#[test]
fn reconnecting_node_gets_its_desired_state_again() {
    let mut c = controller();
    online(&mut c, "a", 0);
    c.apply("hello", spec(1), 0).unwrap();
    let again = online(&mut c, "a", 5);
    assert_eq!(again.len(), 1);
    assert_eq!(decode_desired(&again[0]).generation, 1);
}

#[test]
fn status_reports_drive_views_and_events() {
    let store = SqliteStore::in_memory().unwrap();
    let reader = store.reader().unwrap();
    let mut c = Controller::load(Box::new(store), Config::default(), 0).unwrap();
    online(&mut c, "a", 0);
    c.apply("hello", spec(1), 0).unwrap();
    let fleet = c.fleet();
    let status = |phase, message: &str| NodeStatus {
        observed_fleet: fleet,
        observed_generation: 1,
        workloads: vec![WorkloadStatus {
            name: "hello-0".into(),
            revision: 1,
            phase,
            restarts: 0,
            exit_code: None,
            message: message.into(),
        }],
    };
    c.on_status("a", status(Phase::Running, ""), 1).unwrap();
    assert_eq!(c.snapshot().deployment_views()[0].ready_replicas, 1);
    c.on_status("a", status(Phase::Failed, "wasm trap: unreachable"), 2)
        .unwrap();
    let events = reader.deployment_events("hello", 50).unwrap();
    let reasons: Vec<_> = events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons, ["Created", "Scheduled", "Running", "Failed"]);
    assert!(events[3].message.contains("wasm trap: unreachable"));
    assert_eq!(c.snapshot().node_views(|_| None)[0].observed_generation, 1);
}

/// A snapshot shares the controller's records: one taken after a report from node `b` holds
/// the very records of node `a` the previous one held (a copy per snapshot was half of the
/// hub's memory per node), while `b`'s new status is its own.
#[test]
fn snapshots_share_the_records_a_change_did_not_touch() {
    let mut c = controller();
    online(&mut c, "a", 0);
    online(&mut c, "b", 0);
    c.apply("hello", spec(2), 0).unwrap();
    let before = c.snapshot();
    let report = NodeStatus {
        observed_fleet: c.fleet(),
        observed_generation: 1,
        workloads: vec![],
    };
    c.on_status("b", report, 1).unwrap();
    let after = c.snapshot();
    assert!(Arc::ptr_eq(&before.nodes["a"], &after.nodes["a"]));
    assert!(Arc::ptr_eq(&before.desired["a"], &after.desired["a"]));
    assert!(Arc::ptr_eq(&before.placement, &after.placement));
    // The maps a status does not touch are not copied either.
    assert!(Arc::ptr_eq(&before.nodes, &after.nodes));
    assert!(Arc::ptr_eq(&before.desired, &after.desired));
    // The one it touches is copied on write: the earlier snapshot does not see the change.
    assert!(!before.statuses.contains_key("b"));
    assert_eq!(after.statuses["b"].observed_generation, 1);
}

/// Nodes that announce the same (one agent build on one kind of machine) share one copy of
/// the announcement, also after a restart from the store; a node announcing something else
/// has its own.
#[test]
fn equal_announcements_share_one_copy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let shared = |c: &Controller, x: &str, y: &str| {
        let s = c.snapshot();
        Arc::ptr_eq(&s.nodes[x].hello, &s.nodes[y].hello)
    };
    {
        let mut c = reopen(&path, 0);
        online(&mut c, "a", 0);
        online(&mut c, "b", 0);
        let mut other = hello_of("c");
        other.agent_version = "0.2.0".into();
        c.on_presence("c", Presence::Online(other), 0).unwrap();
        assert!(shared(&c, "a", "b"));
        assert!(!shared(&c, "a", "c"));
        assert_eq!(c.snapshot().nodes["c"].hello.agent_version, "0.2.0");
    }
    let c = reopen(&path, 100);
    assert!(shared(&c, "a", "b"));
    assert!(!shared(&c, "a", "c"));
}

#[test]
fn invalid_specs_change_nothing() {
    let mut c = controller();
    let mut bad = spec(1);
    bad.memory_bytes = 0;
    assert!(matches!(
        c.apply("hello", bad, 0),
        Err(ControllerError::Invalid(_))
    ));
    assert!(matches!(
        c.apply("Bad_Name", spec(1), 0),
        Err(ControllerError::Invalid(_))
    ));
    assert!(c.snapshot().deployment_views().is_empty());
}

#[test]
fn restart_from_the_store_restores_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let open = |now| reopen(&path, now);
    let before = {
        let mut c = open(0);
        online(&mut c, "a", 0);
        c.apply("hello", spec(2), 0).unwrap();
        c.republish_all(0)
    };
    let mut c = open(100);
    assert_eq!(c.republish_all(100), before);
    assert_eq!(c.snapshot().deployment_views()[0].scheduled_replicas, 2);
    assert_eq!(c.snapshot().node_views(|_| None)[0].status, "NotReady");
}

/// A store whose commits fail, like a full disk.
struct FullDisk(SqliteStore);

impl Store for FullDisk {
    fn load(&self) -> Result<crate::store::Snapshot, StoreError> {
        self.0.load()
    }
    fn commit(&mut self, _: &Batch) -> Result<(), StoreError> {
        Err(StoreError::Corrupt {
            what: "disk".into(),
            reason: "database or disk is full".into(),
        })
    }
    fn trim(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[test]
fn store_failure_leaves_memory_unchanged() {
    let mut c = Controller::load(
        Box::new(FullDisk(SqliteStore::in_memory().unwrap())),
        Config::default(),
        0,
    )
    .unwrap();
    assert!(
        c.on_presence(
            "a",
            Presence::Online(Arc::unwrap_or_clone(node("a", true, 1 << 30, 8).hello)),
            0
        )
        .is_err()
    );
    assert!(c.snapshot().node_views(|_| None).is_empty());
    let err = c.apply("hello", spec(1), 0).unwrap_err();
    assert!(err.to_string().contains("disk is full"), "{err}");
    assert!(c.snapshot().deployment_views().is_empty());
}

#[test]
fn a_node_the_hub_knows_nothing_of_is_told_to_run_nothing() {
    let mut c = controller();
    let publish = online(&mut c, "stranger", 1);
    assert_eq!(publish.len(), 1);
    assert_eq!(
        decode_desired(&publish[0]),
        DesiredState {
            fleet: c.fleet(),
            ..DesiredState::default()
        }
    );
}

#[test]
fn every_desired_state_carries_the_fleet() {
    let mut c = controller();
    assert_ne!(c.fleet(), 0);
    online(&mut c, "a", 0);
    let (_, _, publish) = c.apply("hello", spec(1), 0).unwrap();
    assert_eq!(decode_desired(&publish[0]).fleet, c.fleet());
    for p in c.republish_all(1) {
        assert_eq!(decode_desired(&p).fleet, c.fleet());
    }
}

#[test]
fn statuses_of_unknown_nodes_are_not_kept() {
    let mut c = controller();
    let status = NodeStatus {
        observed_fleet: c.fleet(),
        observed_generation: 3,
        workloads: vec![],
    };
    assert!(c.on_status("ghost", status, 1).unwrap().is_empty());
    assert!(c.snapshot().statuses.is_empty());
}

#[test]
fn a_node_ahead_of_a_restored_store_gets_a_generation_above_its_own() {
    let mut c = controller();
    online(&mut c, "a", 0);
    c.apply("hello", spec(1), 0).unwrap();
    let held = c.snapshot().desired["a"].clone();
    assert_eq!(held.generation, 1);
    // The node acted on generation 9 of this fleet: the store was restored from a backup.
    let ahead = NodeStatus {
        observed_fleet: c.fleet(),
        observed_generation: 9,
        workloads: vec![],
    };
    let publish = c.on_status("a", ahead.clone(), 1).unwrap();
    let state = decode_desired(&publish[0]);
    assert_eq!(
        state.generation, 10,
        "above what the node holds, so it is not stale"
    );
    assert_eq!(state.workloads, held.to_wire().workloads, "same content");
    assert!(state.supersedes(&DesiredState {
        fleet: c.fleet(),
        generation: 9,
        workloads: vec![]
    }));
    // The same report again changes nothing more.
    assert!(c.on_status("a", ahead, 2).unwrap().is_empty());
    // A node of another fleet (the hub was rebuilt) is not a reason to re-issue: it accepts
    // any state of this fleet anyway.
    let other = NodeStatus {
        observed_fleet: c.fleet() ^ 1,
        observed_generation: 99,
        workloads: vec![],
    };
    assert!(c.on_status("a", other, 3).unwrap().is_empty());
}

#[test]
fn a_lagging_node_gets_its_desired_state_again() {
    let mut c = controller();
    online(&mut c, "a", 0);
    c.apply("hello", spec(1), 0).unwrap();
    let lagging = NodeStatus {
        observed_fleet: c.fleet(),
        observed_generation: 0,
        workloads: vec![],
    };
    c.on_status("a", lagging.clone(), 1).unwrap();
    // Re-sent 10 s after the send, then at doubling intervals up to the longest wait, while
    // the node stays behind: at 10, 30, 70, 150 and 230 s.
    assert_eq!((LAGGING_RESEND_MS, LAGGING_RESEND_MAX_MS), (10_000, 80_000));
    let mut resent = vec![];
    for now in (1_000..=300_000).step_by(1_000) {
        for p in c.tick(now).unwrap() {
            assert_eq!(decode_desired(&p).generation, 1);
            resent.push(now);
        }
    }
    assert_eq!(resent, [10_000, 30_000, 70_000, 150_000, 230_000]);
    // A new desired state starts the pacing afresh.
    c.apply("hello", spec(2), 300_500).unwrap();
    c.on_status("a", lagging, 300_600).unwrap();
    assert!(c.tick(310_000).unwrap().is_empty(), "paced");
    let again = c.tick(310_500).unwrap();
    assert_eq!(again.len(), 1, "10 s after the new state");
    assert_eq!(decode_desired(&again[0]).generation, 2);
    let caught_up = NodeStatus {
        observed_fleet: c.fleet(),
        observed_generation: 2,
        workloads: vec![],
    };
    c.on_status("a", caught_up, 311_000).unwrap();
    assert!(c.tick(400_000).unwrap().is_empty());
    assert!(
        c.sent.is_empty(),
        "a node that reported its desired state keeps no send time"
    );
}

#[test]
fn module_spellings_are_one_template() {
    let mut c = controller();
    c.apply("hello", spec(1), 0).unwrap();
    let mut other = spec(1);
    other.module = format!("sha256:{}", other.module.to_uppercase());
    let (outcome, _, _) = c.apply("hello", other, 1).unwrap();
    assert_eq!(outcome, ApplyOutcome::Unchanged);
}

fn flip(node: &str, alive: bool, last_seen_ms: u64) -> Flip {
    Flip {
        node: node.into(),
        alive,
        last_seen_ms,
        announced: true,
    }
}

#[test]
fn a_silent_node_is_not_ready_its_replicas_move_after_the_grace_and_a_beat_revives_it() {
    let mut c = controller();
    online(&mut c, "a", 0);
    online(&mut c, "b", 0);
    c.apply("hello", spec(1), 0).unwrap();
    let on = |c: &Controller| c.snapshot().placement.assigned["hello-0"].clone();
    let first = on(&c);
    let other = if first == "a" { "b" } else { "a" };

    assert!(
        c.on_liveness(&flip(&first, false, 1_000), 16_000)
            .unwrap()
            .is_empty()
    );
    let views = c.snapshot().node_views(|_| None);
    let view = views.iter().find(|v| v.name == first).unwrap();
    assert_eq!(view.status, "NotReady");
    assert_eq!(on(&c), first, "kept during the grace period");
    let moved = c.tick(16_000 + 10_001).unwrap();
    assert_eq!(on(&c), other, "moved after the grace period");
    assert!(
        moved
            .iter()
            .any(|p| p.topic.contains(&format!("/n/{other}/")))
    );

    // The next beat: Ready again, sent its (now empty) desired state; the replica stays put.
    let publish = c.on_liveness(&flip(&first, true, 30_000), 30_000).unwrap();
    assert!(
        publish
            .iter()
            .any(|p| p.topic.contains(&format!("/n/{first}/")))
    );
    let state = decode_desired(publish.last().unwrap());
    assert!(state.workloads.is_empty(), "the extra replica is removed");
    assert_eq!(on(&c), other);
    let views = c.snapshot().node_views(|_| None);
    assert!(views.iter().all(|v| v.status == "Ready"));
}

#[test]
fn a_beat_does_not_revive_a_node_that_said_goodbye() {
    let mut c = controller();
    online(&mut c, "a", 0);
    c.on_presence("a", Presence::Offline, 1).unwrap();
    // Its beats go on (a stale Offline, a lost Online): the hub reads its announcement again
    // rather than trust them.
    let unannounced = Flip {
        announced: false,
        ..flip("a", true, 2)
    };
    assert!(c.on_liveness(&unannounced, 2).unwrap().is_empty());
    assert_eq!(c.snapshot().node_views(|_| None)[0].status, "NotReady");
    // And a silence on a node already NotReady changes nothing.
    assert!(
        c.on_liveness(&flip("a", false, 2), 20_000)
            .unwrap()
            .is_empty()
    );
}

/// Reports every workload of the node's desired state Running at its revision.
fn report_running(c: &mut Controller, node: &str, now: u64) {
    let Some(state) = c.snapshot().desired.get(node).cloned() else {
        return;
    };
    let status = NodeStatus {
        observed_fleet: c.fleet(),
        observed_generation: state.generation,
        workloads: state
            .workloads
            .iter()
            .map(|w| WorkloadStatus {
                name: w.name.to_string(),
                revision: w.template.revision,
                phase: Phase::Running,
                restarts: 0,
                exit_code: None,
                message: String::new(),
            })
            .collect(),
    };
    c.on_status(node, status, now).unwrap();
}

fn revisions(c: &Controller) -> Vec<u64> {
    let mut r: Vec<u64> = c
        .snapshot()
        .desired
        .values()
        .flat_map(|s| s.workloads.iter().map(|w| w.template.revision))
        .collect();
    r.sort();
    r
}

fn waves_spec(replicas: u32, arg: &str) -> DeploymentSpec {
    use crate::model::rollout::{RolloutStrategy, Share};
    let mut s = spec(replicas);
    s.args = vec![arg.into()];
    s.rollout = RolloutStrategy {
        waves: vec![Share::Count(1), Share::Percent(100)],
        healthy_for_ms: 1_000,
        max_unavailable: Share::Count(1),
        failure_threshold: 1,
        progress_deadline_ms: 60_000,
    };
    s
}

#[test]
fn a_new_revision_reaches_one_replica_first_and_the_rest_once_it_is_healthy() {
    let mut c = controller();
    for n in ["a", "b", "c"] {
        online(&mut c, n, 0);
    }
    c.apply("app", waves_spec(3, "v1"), 0).unwrap();
    for n in ["a", "b", "c"] {
        report_running(&mut c, n, 10);
    }
    c.tick(2_000).unwrap();
    assert_eq!(revisions(&c), [1, 1, 1]);

    c.apply("app", waves_spec(3, "v2"), 3_000).unwrap();
    assert_eq!(revisions(&c), [1, 1, 2], "wave 1: one replica");
    for n in ["a", "b", "c"] {
        report_running(&mut c, n, 3_100);
    }
    c.tick(3_500).unwrap();
    assert_eq!(revisions(&c), [1, 1, 2], "not healthy for long enough yet");
    c.tick(4_200).unwrap();
    assert_eq!(revisions(&c), [1, 2, 2], "wave 2, one more at a time");
    let history = c.snapshot().revision_views("app").unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].cause, "args");
}

/// Nodes `nodes` running revision 1 of `app` (one replica each), its rollout complete.
fn settled(nodes: &[&str]) -> Controller {
    let mut c = controller();
    for n in nodes {
        online(&mut c, n, 0);
    }
    c.apply("app", waves_spec(nodes.len() as u32, "v1"), 0)
        .unwrap();
    for n in nodes {
        report_running(&mut c, n, 10);
    }
    c.tick(2_000).unwrap();
    c
}

#[test]
fn a_new_apply_during_a_rollout_starts_from_the_last_good_revision() {
    let mut c = settled(&["a", "b"]);
    c.apply("app", waves_spec(2, "v2"), 3_000).unwrap();
    assert_eq!(revisions(&c), [1, 2]);
    c.apply("app", waves_spec(2, "v3"), 3_500).unwrap();
    let rollout = c.snapshot().deployments["app"].rollout.clone().unwrap();
    assert_eq!((rollout.revision, rollout.stable), (3, Some(1)));
    assert_eq!(
        revisions(&c),
        [1, 3],
        "revision 2 is gone, not half-applied"
    );
}

#[test]
fn a_crash_at_the_new_revision_rolls_every_replica_back_and_undo_goes_forward_again() {
    let mut c = settled(&["a", "b"]);
    c.apply("app", waves_spec(2, "v2"), 3_000).unwrap();
    let node = c.snapshot().placement.assigned["app-0"].clone();
    report_running(&mut c, &node, 3_100);
    // Its new instance crashed once.
    let mut status = NodeStatus::clone(&c.snapshot().statuses[&node]);
    let w = status
        .workloads
        .iter_mut()
        .find(|w| w.name == "app-0")
        .unwrap();
    w.restarts = 1;
    w.message = "wasm trap".into();
    c.on_status(&node, status, 3_200).unwrap();
    c.tick(3_300).unwrap();
    let view = c.snapshot().rollout_view("app").unwrap();
    assert_eq!(view.phase, "Failed");
    assert!(view.message.contains("app-0"), "{}", view.message);
    assert_eq!(revisions(&c), [1, 1], "rolled back");

    let (revision, _) = c.undo_rollout("app", None, 4_000).unwrap();
    assert_eq!(revision, 3);
    let d = &c.snapshot().deployments["app"];
    assert_eq!(d.spec.args, ["v1"], "undo goes back to the stable template");
    assert!(
        d.history
            .last()
            .unwrap()
            .cause
            .contains("undo to revision 1")
    );
    assert!(c.undo_rollout("app", Some(99), 5_000).is_err());
}

#[test]
fn a_hub_down_longer_than_the_deadline_does_not_roll_back_a_healthy_rollout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let open = |now| reopen(&path, now);
    {
        let mut c = open(0);
        for n in ["a", "b"] {
            online(&mut c, n, 0);
        }
        c.apply("app", waves_spec(2, "v1"), 0).unwrap();
        for n in ["a", "b"] {
            report_running(&mut c, n, 10);
        }
        c.tick(2_000).unwrap();
        c.apply("app", waves_spec(2, "v2"), 3_000).unwrap();
    }
    // Back ten minutes later (the deadline is one): nobody has reported yet.
    let mut c = open(603_000);
    c.tick(604_000).unwrap();
    let view = c.snapshot().rollout_view("app").unwrap();
    assert_eq!(view.phase, "Progressing", "{}", view.message);
    for n in ["a", "b"] {
        online(&mut c, n, 604_500);
        report_running(&mut c, n, 605_000);
    }
    for now in (606_100..612_000).step_by(1_100) {
        c.tick(now).unwrap();
        for n in ["a", "b"] {
            report_running(&mut c, n, now + 1);
        }
    }
    assert_eq!(c.snapshot().rollout_view("app").unwrap().phase, "Complete");
}

fn hello_of(name: &str) -> wasmfleet_proto::Hello {
    Arc::unwrap_or_clone(node(name, true, 1 << 30, 8).hello)
}

#[test]
fn a_connect_storm_is_one_scheduler_pass_and_every_node_gets_its_state() {
    let mut c = controller();
    c.apply("hello", spec(50), 0).unwrap();
    let before = c.passes();
    let storm = (0..100).map(|i| {
        let n = format!("n{i:03}");
        FleetMessage::Presence(n.clone(), Presence::Online(hello_of(&n)))
    });
    let publish = c.on_fleet(storm, 1).unwrap();
    assert_eq!(c.passes() - before, 1, "one pass for the whole batch");
    let greeted: BTreeSet<&str> = publish.iter().map(|p| p.topic.as_str()).collect();
    assert_eq!(
        greeted.len(),
        100,
        "every node hears its desired state once"
    );
    let placed: usize = publish
        .iter()
        .map(|p| decode_desired(p).workloads.len())
        .sum();
    assert_eq!(placed, 50, "the pending replicas landed in that pass");
    assert_eq!(c.snapshot().node_views(|_| None).len(), 100);
}

#[test]
fn reports_that_change_no_node_schedule_nothing() {
    let mut c = controller();
    online(&mut c, "a", 0);
    c.apply("hello", spec(1), 0).unwrap();
    report_running(&mut c, "a", 10);
    for t in 1..=30 {
        c.tick(t * 1_000).unwrap();
    }
    assert_eq!(
        c.deployments["hello"].rollout.as_ref().unwrap().phase,
        RolloutPhase::Complete
    );
    let before = c.passes();
    // The same status again, a reconnect with the same announcement, and quiet ticks.
    report_running(&mut c, "a", 31_000);
    online(&mut c, "a", 31_000);
    for t in 32..60 {
        c.tick(t * 1_000).unwrap();
    }
    assert_eq!(c.passes(), before, "nothing in there can move a replica");
    assert!(
        c.health.is_empty(),
        "no health kept once the rollout is over"
    );
    assert_eq!(c.health.capacity(), 0, "nor room for it");
    assert!(c.behind.is_empty(), "and no node is behind");
}

#[test]
fn a_tick_schedules_once_when_a_grace_period_ends() {
    let mut c = controller();
    online(&mut c, "a", 0);
    online(&mut c, "b", 0);
    c.apply("hello", spec(1), 0).unwrap();
    let holder = c.snapshot().placement.assigned["hello-0"].clone();
    report_running(&mut c, &holder, 10);
    for t in 1..=30 {
        c.tick(t * 1_000).unwrap();
    }
    c.on_presence(&holder, Presence::Offline, 31_000).unwrap();
    let before = c.passes();
    c.tick(40_999).unwrap();
    assert_eq!(c.passes(), before, "grace (10 s) not over yet");
    let moved = c.tick(41_000).unwrap();
    assert_eq!(c.passes(), before + 1);
    assert!(!moved.is_empty(), "the replica moved");
    assert_ne!(c.snapshot().placement.assigned["hello-0"], holder);
    c.tick(42_000).unwrap();
    assert_eq!(c.passes(), before + 1, "and only once");
}

#[test]
fn a_batch_the_store_refuses_leaves_no_node_behind() {
    let mut c = Controller::load(
        Box::new(FullDisk(SqliteStore::in_memory().unwrap())),
        Config::default(),
        0,
    )
    .unwrap();
    let batch = ["a", "b"].map(|n| FleetMessage::Presence(n.into(), Presence::Online(hello_of(n))));
    assert!(c.on_fleet(batch, 0).is_err());
    assert!(c.snapshot().node_views(|_| None).is_empty());
    assert!(c.nodes.is_empty() && c.deadlines.is_empty());
}

#[test]
fn presences_that_cannot_move_a_replica_run_no_pass() {
    let mut c = controller();
    online(&mut c, "a", 0);
    c.apply("hello", spec(1), 0).unwrap();
    let before = c.passes();
    // Nothing waits and nothing is placed on every node: joins, a short absence and a return
    // leave the replica where it is.
    online(&mut c, "b", 1_000);
    online(&mut c, "c", 1_000);
    c.on_presence("a", Presence::Offline, 2_000).unwrap();
    online(&mut c, "a", 3_000);
    c.on_presence("b", Presence::Offline, 4_000).unwrap();
    assert_eq!(c.passes(), before, "none of these can move hello-0");
    assert_eq!(c.stale_placement(4_000), None);
    assert_eq!(c.snapshot().placement.assigned["hello-0"], "a");
    // And the grace period of b still ends in a pass of its own.
    c.tick(14_000).unwrap();
    assert_eq!(c.stale_placement(14_000), None);

    // A replica that waits makes the next join count.
    let mut c = controller();
    c.apply("hello", spec(1), 0).unwrap();
    let before = c.passes();
    online(&mut c, "a", 1_000);
    assert_eq!(c.passes(), before + 1);
    assert_eq!(c.snapshot().placement.assigned["hello-0"], "a");
}
