//! Getting MQTT subscriptions granted, sans-IO.
//!
//! Queuing a SUBSCRIBE is not being subscribed: the request queue may be full at connect, the
//! packet may be lost with the connection, and a broker may refuse a filter in its SUBACK
//! (NATS refuses QoS 1 subscriptions past its consumer limit; an ACL may refuse one). A node
//! that silently lacks its `desired` subscription looks healthy and never converges.
//!
//! [`Subscriptions`] tracks every wanted filter until the broker grants it: the driver asks
//! [`Subscriptions::poll`] what to send, reports whether queuing worked
//! ([`Subscriptions::sent`]) and hands over the SUBACK ([`Subscriptions::on_suback`]). A
//! filter refused at QoS 1 is asked for again at QoS 0 (retained state still arrives, and
//! desired state is level-triggered, so a lost QoS 0 message is re-sent later); a filter
//! refused at QoS 0, or a SUBACK that never comes, is retried with backoff. Time is a
//! parameter: no clock, no socket.

use std::time::Duration;

/// Quality of service of a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Qos {
    /// At most once.
    AtMostOnce,
    /// At least once.
    AtLeastOnce,
}

/// A SUBACK that is not answered within this time is presumed lost: subscribe again.
pub const SUBACK_TIMEOUT: Duration = Duration::from_secs(10);
/// First delay before retrying a refused filter; doubles per refusal.
pub const RETRY_MIN: Duration = Duration::from_secs(1);
/// Longest delay before retrying a refused filter.
pub const RETRY_MAX: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Filter {
    topic: String,
    /// The QoS asked for now (lowered after a QoS 1 refusal).
    qos: Qos,
    granted: Option<Qos>,
    /// Consecutive refusals at QoS 0.
    refusals: u32,
    retry_at: Duration,
}

/// One SUBSCRIBE packet to send: `(topic filter, QoS)` pairs.
pub type Request = Vec<(String, Qos)>;

/// What a SUBACK said about the filters of the request it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Filters granted, with the QoS the broker granted.
    pub granted: Vec<(String, Qos)>,
    /// Filters refused at QoS 1 that will be asked for at QoS 0.
    pub downgraded: Vec<String>,
    /// Filters refused at QoS 0, retried after backoff.
    pub refused: Vec<String>,
}

/// The subscriptions a client needs, and how far the broker has granted them.
#[derive(Debug, Clone)]
pub struct Subscriptions {
    filters: Vec<Filter>,
    /// Indexes of the filters in the SUBSCRIBE awaiting its SUBACK (`None` for a filter no
    /// longer wanted since), and when it was queued.
    in_flight: Option<(Vec<Option<usize>>, Duration)>,
    /// Filters no longer wanted whose UNSUBSCRIBE is not queued yet. One lost (the client's
    /// queue was full) would leave the subscription counting against the broker's
    /// per-session limit for the rest of the connection: a client that changes filters often
    /// (the hub re-reading announcements) would end up refused every new one.
    unsubscribing: Vec<String>,
}

impl Subscriptions {
    /// Wants `filters`; nothing is granted until the first connection.
    pub fn new(filters: impl IntoIterator<Item = (String, Qos)>) -> Subscriptions {
        Subscriptions {
            filters: filters
                .into_iter()
                .map(|(topic, qos)| Filter {
                    topic,
                    qos,
                    granted: None,
                    refusals: 0,
                    retry_at: Duration::ZERO,
                })
                .collect(),
            in_flight: None,
            unsubscribing: Vec::new(),
        }
    }

    /// A new connection (clean session): nothing is granted any more; ask for everything now,
    /// at the QoS last asked for (a broker that refused QoS 1 will refuse it again).
    pub fn on_connected(&mut self) {
        for f in &mut self.filters {
            f.granted = None;
            f.retry_at = Duration::ZERO;
        }
        self.in_flight = None;
        // A clean session holds no subscriptions to drop.
        self.unsubscribing.clear();
    }

    /// Wants exactly `filters` from now on: filters already wanted keep their state, new ones
    /// are due at once, and the ones no longer wanted are returned and due to be unsubscribed
    /// ([`Subscriptions::unsubscribes`]).
    pub fn set_filters(&mut self, filters: impl IntoIterator<Item = (String, Qos)>) -> Vec<String> {
        let wanted: Vec<(String, Qos)> = filters.into_iter().collect();
        // Wanted again before its UNSUBSCRIBE went out: it must not go out after the SUBSCRIBE.
        self.unsubscribing
            .retain(|t| !wanted.iter().any(|(w, _)| w == t));
        let in_flight: Option<(Vec<Option<String>>, Duration)> =
            self.in_flight.take().map(|(idx, at)| {
                let topics = idx
                    .iter()
                    .map(|i| i.map(|i| self.filters[i].topic.clone()))
                    .collect();
                (topics, at)
            });
        let (kept, removed): (Vec<Filter>, Vec<Filter>) = std::mem::take(&mut self.filters)
            .into_iter()
            .partition(|f| wanted.iter().any(|(t, _)| *t == f.topic));
        self.filters = kept;
        for (topic, qos) in wanted {
            if !self.filters.iter().any(|f| f.topic == topic) {
                self.filters.push(Filter {
                    topic,
                    qos,
                    granted: None,
                    refusals: 0,
                    retry_at: Duration::ZERO,
                });
            }
        }
        self.in_flight = in_flight.map(|(topics, at)| {
            let idx = topics
                .iter()
                .map(|t| {
                    t.as_ref()
                        .and_then(|t| self.filters.iter().position(|f| &f.topic == t))
                })
                .collect();
            (idx, at)
        });
        let removed: Vec<String> = removed.into_iter().map(|f| f.topic).collect();
        self.unsubscribing.extend(removed.iter().cloned());
        removed
    }

    /// Filters to unsubscribe from, oldest first: queue them in order, then report how many
    /// were queued ([`Subscriptions::unsubscribes_sent`]); the rest stay due.
    pub fn unsubscribes(&self) -> &[String] {
        &self.unsubscribing
    }

    /// The first `count` of [`Subscriptions::unsubscribes`] were queued.
    pub fn unsubscribes_sent(&mut self, count: usize) {
        self.unsubscribing
            .drain(..count.min(self.unsubscribing.len()));
    }

    /// Whether every filter is granted.
    pub fn all_granted(&self) -> bool {
        self.filters.iter().all(|f| f.granted.is_some())
    }

    /// The granted QoS of `topic`, if granted.
    pub fn granted(&self, topic: &str) -> Option<Qos> {
        self.filters
            .iter()
            .find(|f| f.topic == topic)
            .and_then(|f| f.granted)
    }

    /// The SUBSCRIBE to send at `now`, if any: every ungranted filter whose retry time has come,
    /// unless one is already awaiting its SUBACK (one at a time, so a SUBACK always answers the
    /// request it is matched with). Call [`Subscriptions::sent`] once it is queued.
    pub fn poll(&mut self, now: Duration) -> Option<Request> {
        if let Some((_, at)) = &self.in_flight {
            if now < *at + SUBACK_TIMEOUT {
                return None;
            }
            self.in_flight = None; // presumed lost: ask again
        }
        let due: Request = self
            .filters
            .iter()
            .filter(|f| f.granted.is_none() && now >= f.retry_at)
            .map(|f| (f.topic.clone(), f.qos))
            .collect();
        (!due.is_empty()).then_some(due)
    }

    /// `request` (from [`Subscriptions::poll`]) was queued at `now`; its SUBACK is awaited.
    /// Not calling this (the queue was full) leaves the filters due for the next poll.
    pub fn sent(&mut self, request: &Request, now: Duration) {
        let idx = request
            .iter()
            .map(|(t, _)| self.filters.iter().position(|f| &f.topic == t))
            .collect();
        self.in_flight = Some((idx, now));
    }

    /// Takes a SUBACK: one entry per filter of the awaited request, `Some(granted QoS)` or
    /// `None` for a refusal. A SUBACK when none is awaited, or of the wrong length, is ignored
    /// (the awaited request times out and is sent again).
    pub fn on_suback(&mut self, codes: &[Option<Qos>], now: Duration) -> Option<Outcome> {
        let (idx, _) = self
            .in_flight
            .take_if(|(idx, _)| idx.len() == codes.len())?;
        let mut out = Outcome {
            granted: vec![],
            downgraded: vec![],
            refused: vec![],
        };
        for (i, code) in idx.into_iter().zip(codes) {
            // A filter dropped while its SUBSCRIBE was in flight: its answer is moot.
            let Some(f) = i.and_then(|i| self.filters.get_mut(i)) else {
                continue;
            };
            match (code, f.qos) {
                (Some(q), _) => {
                    f.granted = Some(*q);
                    f.refusals = 0;
                    out.granted.push((f.topic.clone(), *q));
                }
                (None, Qos::AtLeastOnce) => {
                    f.qos = Qos::AtMostOnce;
                    f.retry_at = now;
                    out.downgraded.push(f.topic.clone());
                }
                (None, Qos::AtMostOnce) => {
                    let delay = crate::backoff::exponential(RETRY_MIN, RETRY_MAX, f.refusals);
                    f.refusals = f.refusals.saturating_add(1);
                    f.retry_at = now + delay;
                    out.refused.push(f.topic.clone());
                }
            }
        }
        Some(out)
    }

    /// When [`Subscriptions::poll`] next has something to do, if ever (for drivers that sleep).
    pub fn next_due(&self) -> Option<Duration> {
        if let Some((_, at)) = &self.in_flight {
            return Some(*at + SUBACK_TIMEOUT);
        }
        self.filters
            .iter()
            .filter(|f| f.granted.is_none())
            .map(|f| f.retry_at)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    use Qos::{AtLeastOnce as Q1, AtMostOnce as Q0};

    fn subs() -> Subscriptions {
        Subscriptions::new([("a/desired".to_string(), Q1), ("a/blob".to_string(), Q1)])
    }

    #[test]
    fn filters_change_without_losing_granted_state_or_in_flight_answers() {
        let mut s = subs();
        s.on_connected();
        let r = s.poll(S).unwrap();
        s.sent(&r, S);
        // While the SUBACK is on its way, "a/blob" is dropped and an app filter added.
        let removed = s.set_filters([("a/desired".to_string(), Q1), ("app/#".to_string(), Q0)]);
        assert_eq!(removed, ["a/blob"]);
        s.on_suback(&[Some(Q1), Some(Q1)], 2 * S).unwrap();
        assert_eq!(s.granted("a/desired"), Some(Q1));
        assert_eq!(s.granted("app/#"), None);
        let r = s.poll(2 * S).unwrap();
        assert_eq!(
            topics(&r),
            [("app/#", Q0)],
            "only the new filter is asked for"
        );
        s.sent(&r, 2 * S);
        s.on_suback(&[Some(Q0)], 3 * S).unwrap();
        assert!(s.all_granted());
        assert!(s.set_filters([("a/desired".to_string(), Q1)]) == ["app/#"]);
        assert!(s.all_granted());
    }

    fn topics(r: &Request) -> Vec<(&str, Qos)> {
        r.iter().map(|(t, q)| (t.as_str(), *q)).collect()
    }

    #[test]
    fn granted_after_suback_and_again_after_reconnect() {
        let mut s = subs();
        s.on_connected();
        let r = s.poll(S).unwrap();
        assert_eq!(topics(&r), [("a/desired", Q1), ("a/blob", Q1)]);
        s.sent(&r, S);
        assert_eq!(s.poll(S), None, "one request at a time");
        assert!(!s.all_granted());
        s.on_suback(&[Some(Q1), Some(Q1)], S).unwrap();
        assert!(s.all_granted());
        assert_eq!(s.poll(2 * S), None);
        s.on_connected();
        assert!(!s.all_granted(), "a clean session forgets subscriptions");
        assert_eq!(s.poll(3 * S).unwrap().len(), 2);
    }

    #[test]
    fn unsubscribes_stay_due_until_queued_and_never_follow_a_new_subscribe() {
        let mut s = subs();
        s.on_connected();
        s.set_filters([("a/desired".to_string(), Q1)]);
        s.set_filters([("x".to_string(), Q1)]);
        assert_eq!(s.unsubscribes(), ["a/blob", "a/desired"]);
        // The queue took one of the two.
        s.unsubscribes_sent(1);
        assert_eq!(s.unsubscribes(), ["a/desired"]);
        // Wanted again before its UNSUBSCRIBE went out: it is not sent at all.
        s.set_filters([("a/desired".to_string(), Q1)]);
        assert_eq!(s.unsubscribes(), ["x"]);
        // A new clean session has nothing to unsubscribe from.
        s.on_connected();
        assert!(s.unsubscribes().is_empty());
    }

    #[test]
    fn a_request_that_could_not_be_queued_is_asked_for_again() {
        let mut s = subs();
        s.on_connected();
        assert!(s.poll(S).is_some());
        // The queue was full: `sent` not called.
        assert!(s.poll(S).is_some(), "still due");
    }

    #[test]
    fn qos1_refused_falls_back_to_qos0() {
        let mut s = subs();
        s.on_connected();
        let r = s.poll(S).unwrap();
        s.sent(&r, S);
        let out = s.on_suback(&[None, Some(Q1)], S).unwrap();
        assert_eq!(out.downgraded, ["a/desired"]);
        assert_eq!(s.granted("a/blob"), Some(Q1));
        let r = s.poll(S).unwrap();
        assert_eq!(topics(&r), [("a/desired", Q0)]);
        s.sent(&r, S);
        s.on_suback(&[Some(Q0)], S).unwrap();
        assert!(s.all_granted());
        assert_eq!(s.granted("a/desired"), Some(Q0));
    }

    #[test]
    fn refused_at_qos0_retries_with_growing_backoff() {
        let mut s = Subscriptions::new([("t".to_string(), Q0)]);
        s.on_connected();
        let mut now = S;
        let mut waits = vec![];
        for _ in 0..8 {
            let r = s.poll(now).unwrap();
            s.sent(&r, now);
            assert_eq!(s.on_suback(&[None], now).unwrap().refused, ["t"]);
            assert_eq!(s.poll(now), None, "not before the backoff");
            let due = s.next_due().unwrap();
            waits.push((due - now).as_secs());
            now = due;
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        let r = s.poll(now).unwrap();
        s.sent(&r, now);
        s.on_suback(&[Some(Q0)], now).unwrap();
        assert!(s.all_granted());
    }

    #[test]
    fn a_lost_suback_times_out_and_a_stray_one_is_ignored() {
        let mut s = subs();
        s.on_connected();
        let r = s.poll(S).unwrap();
        s.sent(&r, S);
        assert_eq!(s.on_suback(&[Some(Q1)], S), None, "wrong length: not ours");
        assert_eq!(s.poll(S + SUBACK_TIMEOUT - S / 10), None);
        assert_eq!(s.poll(S + SUBACK_TIMEOUT).unwrap().len(), 2);
        let mut fresh = subs();
        assert_eq!(
            fresh.on_suback(&[Some(Q1), Some(Q1)], S),
            None,
            "none awaited"
        );
    }
}
