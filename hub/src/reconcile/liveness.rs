//! Which nodes are alive, from their heartbeats.
//!
//! The MQTT Last Will says when the broker sees a connection close. It says nothing when it
//! does not: a half-open link, a frozen agent (SIGSTOP), a broker that restarted and lost the
//! session while the node's retained `Online` survived. Nodes therefore beat every few seconds
//! ([`wasmfleet_proto::Heartbeat`]); a node silent for [`MISSED_HEARTBEATS`] of its own
//! intervals is declared silent, and alive again with its next beat.
//!
//! A beat costs one hash lookup and no allocation (at 10,000 nodes beating every 5 s that is
//! 2,000 a second); only a change between alive and silent leaves this table, so the
//! controller and its store see flips, never beats. [`Liveness::expire`] scans the table; the
//! hub calls it five times a second (10,000 entries take microseconds).
//!
//! A node that beats without the hub having its announcement (the `Online` was lost: the
//! hub's own session dropped and its queue with it, a broker queue overflowed) would otherwise
//! stay unknown for as long as it stays connected, since it announces itself only when it
//! connects. Its announcement is retained at the broker, so the hub reads it again:
//! [`Liveness::unannounced`] names such nodes, and the link subscribes to their `online`
//! topics for a moment (a new subscription delivers the retained message).
//!
//! Flips are edges, and an edge can be lost on its way to the controller: the inbox full, a
//! store transaction that failed. The controller would then hold a node Ready that stopped
//! beating, or NotReady while it beats, for as long as nothing flips again. So the hub
//! compares the two every few seconds and [`Liveness::restate`] re-sends this table's view
//! where the controller's differs (level-triggered, like desired states).

use std::collections::HashMap;

use wasmfleet_proto::MISSED_HEARTBEATS;

/// The interval assumed for a node until its first beat says otherwise (the agents' default).
pub const DEFAULT_INTERVAL_MS: u32 = 5_000;

/// Most nodes watched: beats from further names are ignored (a client inventing node names
/// must not grow the hub without bound; the controller keeps as many nodes).
pub const MAX_WATCHED: usize = 100_000;

/// Shortest interval a node may claim: a node cannot make the hub scan for it more often.
pub const MIN_INTERVAL_MS: u32 = 500;

/// Intervals a node beats without an announcement before the hub reads its retained one (and
/// between two readings). An announcement and the first beat normally arrive together; after
/// a hub restart the retained announcements of a large fleet take a few seconds to arrive.
pub const UNANNOUNCED_BEATS: u32 = 2;

#[derive(Debug, Clone, Copy)]
struct Seen {
    last_ms: u64,
    /// Unannounced: since when the hub has waited for the announcement (or last asked).
    waiting_ms: u64,
    interval_ms: u32,
    alive: bool,
    /// The hub holds this node's announcement.
    announced: bool,
}

impl Seen {
    fn heard(last_ms: u64, interval_ms: u32) -> Seen {
        Seen {
            last_ms,
            waiting_ms: last_ms,
            interval_ms,
            alive: true,
            announced: false,
        }
    }

    fn deadline(&self) -> u64 {
        self.last_ms + u64::from(self.interval_ms) * u64::from(MISSED_HEARTBEATS)
    }
}

/// A change of a node's liveness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flip {
    /// The node.
    pub node: String,
    /// Alive again (a beat after silence), or silent.
    pub alive: bool,
    /// When it was last heard from, ms since the Unix epoch.
    pub last_seen_ms: u64,
    /// The hub holds the node's announcement (`Online`, and no `Offline` since): alive then
    /// means Ready. Beats from a node that said `Offline` or whose announcement was lost do
    /// not make it Ready; its announcement is read again first.
    pub announced: bool,
}

/// Last-heard times of every connected node.
#[derive(Debug, Default)]
pub struct Liveness {
    nodes: HashMap<String, Seen>,
    /// While the hub's own link is down it hears nobody: nobody is declared silent for it.
    paused: bool,
}

impl Liveness {
    /// A beat from `node`. Returns the flip if the node had been declared silent.
    /// O(1); allocates only the first time a node is heard.
    pub fn beat(&mut self, node: &str, interval_ms: u32, now_ms: u64) -> Option<Flip> {
        let interval_ms = interval_ms.max(MIN_INTERVAL_MS);
        let full = self.nodes.len() >= MAX_WATCHED;
        match self.nodes.get_mut(node) {
            Some(seen) => {
                let was_alive = seen.alive;
                seen.last_ms = now_ms;
                seen.interval_ms = interval_ms;
                seen.alive = true;
                (!was_alive).then(|| Flip {
                    node: node.to_owned(),
                    alive: true,
                    last_seen_ms: now_ms,
                    announced: seen.announced,
                })
            }
            None if full => None,
            None => {
                self.nodes
                    .insert(node.to_owned(), Seen::heard(now_ms, interval_ms));
                None
            }
        }
    }

    /// `node` announced itself (`Online`): heard now. Its interval stays what it last claimed.
    pub fn connected(&mut self, node: &str, now_ms: u64) {
        let interval_ms = self
            .nodes
            .get(node)
            .map_or(DEFAULT_INTERVAL_MS, |s| s.interval_ms);
        let seen = Seen {
            announced: true,
            ..Seen::heard(now_ms, interval_ms)
        };
        self.nodes.insert(node.to_owned(), seen);
    }

    /// `node`'s announcement arrived but could not be kept (the inbox was full): it counts as
    /// unannounced from now, so it is read again if the node keeps beating.
    pub fn announcement_lost(&mut self, node: &str, now_ms: u64) {
        if let Some(seen) = self.nodes.get_mut(node) {
            seen.announced = false;
            seen.waiting_ms = now_ms;
        }
    }

    /// Up to `max` nodes that have beaten for [`UNANNOUNCED_BEATS`] of their intervals
    /// without the hub holding their announcement, sorted; each is named again only after as
    /// long once more. None while the hub's link is down.
    pub fn unannounced(&mut self, now_ms: u64, max: usize) -> Vec<String> {
        if self.paused {
            return vec![];
        }
        let mut out = Vec::new();
        for (node, seen) in &mut self.nodes {
            if out.len() >= max {
                break;
            }
            let wait = u64::from(seen.interval_ms) * u64::from(UNANNOUNCED_BEATS);
            if !seen.announced && now_ms >= seen.waiting_ms + wait {
                seen.waiting_ms = now_ms;
                out.push(node.clone());
            }
        }
        out.sort();
        out
    }

    /// `node` said it is gone (`Offline`, or its Last Will): nothing more to watch.
    pub fn disconnected(&mut self, node: &str) {
        self.nodes.remove(node);
    }

    /// The hub's link to the broker dropped: silence from now on means nothing.
    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// The hub's link is back: every node gets a full deadline from now to be heard again.
    pub fn resume(&mut self, now_ms: u64) {
        self.paused = false;
        for seen in self.nodes.values_mut() {
            seen.last_ms = seen.last_ms.max(now_ms);
            // The subscriptions are new: retained announcements are on their way.
            seen.waiting_ms = seen.waiting_ms.max(now_ms);
        }
    }

    /// Nodes alive until now whose deadline has passed, now declared silent.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Flip> {
        if self.paused {
            return vec![];
        }
        let mut out = Vec::new();
        for (node, seen) in &mut self.nodes {
            if seen.alive && now_ms > seen.deadline() {
                seen.alive = false;
                out.push(Flip {
                    node: node.clone(),
                    alive: false,
                    last_seen_ms: seen.last_ms,
                    announced: seen.announced,
                });
            }
        }
        out.sort_by(|a, b| a.node.cmp(&b.node));
        out
    }

    /// Flips that restate this table to a controller holding `ready` (each node it knows, and
    /// whether it is Ready), where the two differ:
    /// - a node this table declared silent but the controller holds Ready: silent again;
    /// - an announced node alive here but NotReady there: alive again (an unannounced one is
    ///   read again from the broker instead, [`Liveness::unannounced`]);
    /// - a Ready node this table does not watch (its `Offline` was taken here but lost on the
    ///   way to the controller): watched from now, unannounced. It is declared silent if it
    ///   does not beat, and its announcement is read again if it does.
    ///
    /// Nothing while the hub's link is down.
    pub fn restate<'a>(
        &mut self,
        ready: impl IntoIterator<Item = (&'a str, bool)>,
        now_ms: u64,
    ) -> Vec<Flip> {
        if self.paused {
            return vec![];
        }
        let mut out = Vec::new();
        for (node, ready) in ready {
            match self.nodes.get(node) {
                Some(seen) if seen.alive != ready && (seen.announced || !seen.alive) => {
                    out.push(Flip {
                        node: node.to_owned(),
                        alive: seen.alive,
                        last_seen_ms: seen.last_ms,
                        announced: seen.announced,
                    });
                }
                Some(_) => {}
                None if ready && self.nodes.len() < MAX_WATCHED => {
                    self.nodes
                        .insert(node.to_owned(), Seen::heard(now_ms, DEFAULT_INTERVAL_MS));
                }
                None => {}
            }
        }
        out
    }

    /// When `node` was last heard from.
    pub fn last_seen(&self, node: &str) -> Option<u64> {
        self.nodes.get(node).map(|s| s.last_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_missed_beats_make_a_node_silent_and_one_beat_brings_it_back() {
        let mut l = Liveness::default();
        l.connected("a", 0);
        assert_eq!(l.beat("a", 5_000, 5_000), None);
        assert!(l.expire(20_000).is_empty(), "exactly at the deadline");
        let silent = l.expire(20_001);
        assert_eq!(
            silent,
            [Flip {
                node: "a".into(),
                alive: false,
                last_seen_ms: 5_000,
                announced: true,
            }]
        );
        assert!(l.expire(30_000).is_empty(), "declared once");
        let back = l.beat("a", 5_000, 31_000).expect("a flip");
        assert!(back.alive && back.announced);
        assert_eq!(l.last_seen("a"), Some(31_000));
    }

    #[test]
    fn the_interval_comes_from_the_node_but_has_a_floor() {
        let mut l = Liveness::default();
        l.beat("slow", 60_000, 0);
        l.beat("eager", 1, 0);
        assert!(l.expire(179_000).iter().all(|f| f.node != "slow"));
        assert_eq!(l.expire(180_001)[0].node, "slow");
        let mut l = Liveness::default();
        l.beat("eager", 1, 0);
        assert!(l.expire(MIN_INTERVAL_MS as u64 * 3).is_empty());
    }

    #[test]
    fn a_node_that_never_beats_is_silent_after_the_default_deadline() {
        // A retained Online from a node that died with the broker's session.
        let mut l = Liveness::default();
        l.connected("ghost", 1_000);
        assert!(l.expire(16_000).is_empty());
        assert_eq!(l.expire(16_001).len(), 1);
    }

    #[test]
    fn offline_nodes_are_not_watched_and_a_late_beat_is_no_flip() {
        let mut l = Liveness::default();
        l.connected("a", 0);
        l.disconnected("a");
        assert!(l.expire(100_000).is_empty());
        assert_eq!(l.beat("a", 5_000, 100_000), None);
    }

    #[test]
    fn a_node_beating_without_an_announcement_is_named_after_two_intervals_and_not_again_at_once() {
        let mut l = Liveness::default();
        l.connected("known", 0);
        assert_eq!(l.beat("known", 1_000, 0), None);
        assert_eq!(l.beat("lost", 1_000, 0), None);
        assert!(l.unannounced(1_999, 10).is_empty(), "too early");
        assert_eq!(l.unannounced(2_000, 10), ["lost"]);
        assert!(l.unannounced(3_000, 10).is_empty(), "asked a moment ago");
        assert_eq!(l.unannounced(4_000, 10), ["lost"], "asked again");
        l.connected("lost", 4_500);
        assert!(l.unannounced(60_000, 10).is_empty(), "announced now");
        // The inbox could not keep an announcement: counted from then.
        l.announcement_lost("known", 60_000);
        assert!(l.unannounced(61_000, 10).is_empty());
        assert_eq!(l.unannounced(70_000, 10), ["known"]);
    }

    #[test]
    fn unannounced_nodes_are_named_a_batch_at_a_time_and_never_while_the_link_is_down() {
        let mut l = Liveness::default();
        for n in ["a", "b", "c"] {
            l.beat(n, 1_000, 0);
        }
        l.pause();
        assert!(l.unannounced(10_000, 10).is_empty(), "nobody to ask");
        l.resume(10_000);
        assert!(
            l.unannounced(11_000, 10).is_empty(),
            "retained announcements follow a reconnect"
        );
        let first = l.unannounced(12_000, 2);
        assert_eq!(first.len(), 2);
        let rest = l.unannounced(12_000, 2);
        assert_eq!(rest.len(), 1);
        assert!(!first.contains(&rest[0]));
    }

    #[test]
    fn the_hubs_own_outage_declares_nobody_silent() {
        let mut l = Liveness::default();
        l.connected("a", 0);
        l.pause();
        assert!(l.expire(60_000).is_empty());
        l.resume(60_000);
        assert!(
            l.expire(70_000).is_empty(),
            "a full deadline from the reconnect"
        );
        assert_eq!(l.expire(75_001).len(), 1);
    }

    #[test]
    fn restating_resends_only_where_the_controller_differs() {
        let mut l = Liveness::default();
        for n in ["quiet", "beating", "agrees"] {
            l.connected(n, 0);
        }
        l.beat("stranger", 5_000, 0);
        l.expire(16_000);
        l.beat("beating", 5_000, 17_000);
        l.beat("stranger", 5_000, 17_000);
        l.beat("agrees", 5_000, 17_000);
        let held = [
            ("quiet", true),
            ("beating", false),
            ("agrees", true),
            ("stranger", false),
            ("gone", true),
            ("gone-too", false),
        ];
        let flips = l.restate(held, 18_000);
        let said: Vec<(&str, bool)> = flips.iter().map(|f| (f.node.as_str(), f.alive)).collect();
        assert_eq!(said, [("quiet", false), ("beating", true)]);
        assert_eq!(flips[0].last_seen_ms, 0);
        assert!(flips[1].announced);
        // A Ready node nobody watched is watched now: silent unless it beats.
        assert_eq!(l.last_seen("gone"), Some(18_000));
        assert_eq!(l.last_seen("gone-too"), None);
        assert!(l.expire(33_000).iter().all(|f| f.node != "gone"));
        let silent = l.expire(33_001);
        assert!(silent.iter().any(|f| f.node == "gone" && !f.announced));
        // Unannounced and silent, still Ready at the controller: silent again.
        let again = l.restate([("gone", true)], 34_000);
        assert_eq!(again.len(), 1);
        l.pause();
        assert!(l.restate([("quiet", true)], 40_000).is_empty(), "link down");
    }
}
