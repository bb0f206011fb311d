//! The fetcher as a state machine: windows, timeouts, routes, and what each route may bring.

use super::*;

const C: u64 = MAX_BLOB_CHUNK as u64;
const T0: Duration = Duration::ZERO;
const MS: Duration = Duration::from_millis(1);

fn module(size: u64) -> ModuleRef {
    ModuleRef {
        digest: Digest([7; 32]),
        size,
    }
}

/// Polls with the blob topic granted.
fn poll(f: &mut Fetcher, now: Duration) -> Vec<Ask> {
    f.poll(now, |_, _| true)
}

fn offsets(asks: &[Ask]) -> Vec<u64> {
    asks.iter().map(|a| a.request.offset).collect()
}

fn routes(asks: &[Ask]) -> Vec<Route> {
    asks.iter().map(|a| a.route).collect()
}

fn chunk(m: ModuleRef, offset: u64, len: u64) -> BlobReply {
    BlobReply::Chunk {
        digest: m.digest,
        offset,
        total: m.size,
        data: vec![1; len as usize],
    }
}

fn appended(out: &ReplyOutcome) -> Option<(u64, u64, bool)> {
    match out {
        ReplyOutcome::Append {
            offset,
            data,
            complete,
            ..
        } => Some((*offset, data.len() as u64, *complete)),
        _ => None,
    }
}

#[test]
fn window_of_four_and_slides() {
    let m = module(10 * C + 5);
    let mut f = Fetcher::new();
    f.want(m, 0);
    let reqs = poll(&mut f, T0);
    assert_eq!(offsets(&reqs), [0, C, 2 * C, 3 * C]);
    assert!(reqs.iter().all(|r| r.request.len == MAX_BLOB_CHUNK));
    assert!(reqs.iter().all(|r| r.route == Route::FanOut));
    assert!(poll(&mut f, T0).is_empty(), "window full");
    let out = f.on_reply(chunk(m, 0, C), Route::FanOut, T0);
    assert_eq!(
        out,
        ReplyOutcome::Append {
            digest: m.digest,
            offset: 0,
            data: vec![1; C as usize],
            complete: false
        }
    );
    assert_eq!(offsets(&poll(&mut f, T0)), [4 * C]);
}

#[test]
fn last_chunk_is_short_and_completes() {
    let m = module(C + 5);
    let mut f = Fetcher::new();
    f.want(m, 0);
    let reqs = poll(&mut f, T0);
    assert_eq!(
        reqs.iter()
            .map(|r| (r.request.offset, r.request.len))
            .collect::<Vec<_>>(),
        [(0, MAX_BLOB_CHUNK), (C, 5)]
    );
    assert_eq!(
        f.on_reply(chunk(m, C, 5), Route::Direct, T0),
        ReplyOutcome::Ignored,
        "held until the gap fills"
    );
    let out = f.on_reply(chunk(m, 0, C), Route::Direct, T0);
    assert_eq!(appended(&out), Some((0, C + 5, true)));
    f.finished(&m.digest);
    assert!(!f.is_fetching(&m.digest));
    assert!(poll(&mut f, T0).is_empty());
    assert_eq!(f.fan_out_topics().count(), 0, "unsubscribed when done");
}

#[test]
fn a_gap_below_early_chunks_is_requested_again_after_reconnect() {
    let m = module(4 * C);
    let mut f = Fetcher::new();
    f.want(m, 0);
    assert_eq!(offsets(&poll(&mut f, T0)), [0, C, 2 * C, 3 * C]);
    // Replies arrive out of order, then the link drops before chunk 0 arrives.
    let r = Route::Direct;
    assert_eq!(f.on_reply(chunk(m, C, C), r, T0), ReplyOutcome::Ignored);
    assert_eq!(f.on_reply(chunk(m, 2 * C, C), r, T0), ReplyOutcome::Ignored);
    f.reset_outstanding();
    assert_eq!(
        offsets(&poll(&mut f, T0)),
        [0, 3 * C],
        "the gap and the rest, nothing twice"
    );
    let out = f.on_reply(chunk(m, 0, C), r, T0);
    assert_eq!(appended(&out), Some((0, 3 * C, false)));
}

#[test]
fn timeout_re_requests() {
    let m = module(2 * C);
    let mut f = Fetcher::new();
    f.want(m, 0);
    assert_eq!(poll(&mut f, T0).len(), 2);
    f.on_reply(chunk(m, 0, C), Route::FanOut, T0);
    assert!(poll(&mut f, REQUEST_TIMEOUT - MS).is_empty());
    assert_eq!(offsets(&poll(&mut f, REQUEST_TIMEOUT)), [C]);
    assert!(
        poll(&mut f, REQUEST_TIMEOUT + Duration::from_secs(1)).is_empty(),
        "timer restarted"
    );
    f.reset_outstanding();
    assert_eq!(
        offsets(&poll(&mut f, REQUEST_TIMEOUT + Duration::from_secs(1))),
        [C]
    );
}

#[test]
fn resumes_from_partial_length_on_the_shared_chunk_grid() {
    let m = module(3 * C);
    let mut f = Fetcher::new();
    f.want(m, C + 10);
    let reqs = poll(&mut f, T0);
    assert_eq!(
        reqs.iter()
            .map(|r| (r.request.offset, u64::from(r.request.len)))
            .collect::<Vec<_>>(),
        [(C + 10, C - 10), (2 * C, C)],
        "the rest of its chunk, then whole chunks as every other node asks"
    );
    assert_eq!(
        f.on_reply(chunk(m, 0, C), Route::FanOut, T0),
        ReplyOutcome::Ignored,
        "stale data before the resume point"
    );
}

#[test]
fn not_found_pauses_then_retries_from_zero() {
    let m = module(C);
    let mut f = Fetcher::new();
    f.want(m, 0);
    poll(&mut f, T0);
    assert_eq!(
        f.on_reply(BlobReply::NotFound { digest: m.digest }, Route::FanOut, T0),
        ReplyOutcome::NotFound(m.digest)
    );
    assert!(f.problem(&m.digest).unwrap().contains("hub has no module"));
    assert_eq!(
        f.fan_out_topics().count(),
        0,
        "no subscription while paused"
    );
    assert!(poll(&mut f, RETRY_AFTER - MS).is_empty());
    assert_eq!(offsets(&poll(&mut f, RETRY_AFTER)), [0]);
    assert_eq!(f.problem(&m.digest), None);
    let other = BlobReply::NotFound {
        digest: Digest([0; 32]),
    };
    assert_eq!(f.on_reply(other, Route::Direct, T0), ReplyOutcome::Ignored);
}

#[test]
fn spoofed_or_stray_chunks_on_the_node_topic_are_ignored() {
    let m = module(3 * C);
    let mut f = Fetcher::new();
    f.want(m, 0);
    assert_eq!(offsets(&poll(&mut f, T0)), [0, C, 2 * C]);
    let forged = |offset: u64, len: u64, total: u64| BlobReply::Chunk {
        digest: m.digest,
        offset,
        total,
        data: vec![9; len as usize],
    };
    for (what, reply) in [
        ("an offset never asked for", forged(C / 2, C, m.size)),
        ("a short answer to a full request", forged(0, C - 1, m.size)),
        ("a longer answer", forged(0, C + 1, m.size)),
        ("another total", forged(0, C, m.size + 1)),
        ("past the end", forged(3 * C, C, m.size)),
        ("an offset that overflows", forged(u64::MAX - 1, C, m.size)),
    ] {
        assert_eq!(
            f.on_reply(reply, Route::Direct, T0),
            ReplyOutcome::Ignored,
            "{what}"
        );
    }
    // The real answer is still taken.
    assert!(matches!(
        f.on_reply(chunk(m, 0, C), Route::Direct, T0),
        ReplyOutcome::Append { offset: 0, .. }
    ));
    // A duplicate of an answered request is not outstanding any more.
    assert_eq!(
        f.on_reply(chunk(m, 0, C), Route::Direct, T0),
        ReplyOutcome::Ignored
    );
}

#[test]
fn an_unsent_request_is_asked_for_again_at_once() {
    let m = module(2 * C);
    let mut f = Fetcher::new();
    f.want(m, 0);
    let reqs = poll(&mut f, T0);
    assert_eq!(offsets(&reqs), [0, C]);
    f.unsent(&reqs[1].request);
    assert_eq!(offsets(&poll(&mut f, T0)), [C], "not left to time out");
}

#[test]
fn a_complete_partial_that_could_not_be_finished_starts_over() {
    let m = module(2 * C);
    let mut f = Fetcher::new();
    f.want(m, 2 * C);
    assert_eq!(
        offsets(&poll(&mut f, T0)),
        [0, C],
        "fetched again, not stalled"
    );
    let mut g = Fetcher::new();
    g.want(m, 5 * C);
    assert_eq!(offsets(&poll(&mut g, T0)), [0, C]);
}

#[test]
fn a_chunk_another_node_asked_for_is_taken_from_the_blob_topic() {
    let m = module(10 * C);
    let mut f = Fetcher::new();
    f.want(m, 0);
    assert_eq!(offsets(&poll(&mut f, T0)), [0, C, 2 * C, 3 * C]);
    // A node ahead in the same fetch asked for chunk 5; the hub published it to everyone.
    assert_eq!(
        f.on_reply(chunk(m, 5 * C, C), Route::FanOut, T0),
        ReplyOutcome::Ignored,
        "held: the gap before it is not filled yet"
    );
    // The same chunk on the node's own topic would not be: nobody here asked for it.
    assert_eq!(
        f.on_reply(chunk(m, 6 * C, C), Route::Direct, T0),
        ReplyOutcome::Ignored
    );
    for k in 0..4 {
        f.on_reply(chunk(m, k * C, C), Route::FanOut, T0);
    }
    assert_eq!(
        offsets(&poll(&mut f, T0)),
        [4 * C, 6 * C, 7 * C, 8 * C],
        "chunk 5 is not asked for"
    );
    let out = f.on_reply(chunk(m, 4 * C, C), Route::FanOut, T0);
    assert_eq!(
        appended(&out),
        Some((4 * C, 2 * C, false)),
        "4 and 5 together"
    );
    // An unrequested chunk that completes the blob completes it.
    for k in [6, 7, 8] {
        f.on_reply(chunk(m, k * C, C), Route::FanOut, T0);
    }
    let out = f.on_reply(chunk(m, 9 * C, C), Route::FanOut, T0);
    assert_eq!(appended(&out), Some((9 * C, C, true)));
}

#[test]
fn duplicates_from_the_blob_topic_are_ignored() {
    let m = module(8 * C);
    let mut f = Fetcher::new();
    f.want(m, 0);
    poll(&mut f, T0);
    assert!(appended(&f.on_reply(chunk(m, 0, C), Route::FanOut, T0)).is_some());
    assert_eq!(
        f.on_reply(chunk(m, 0, C), Route::FanOut, T0),
        ReplyOutcome::Ignored,
        "already written"
    );
    assert_eq!(
        f.on_reply(chunk(m, 6 * C, C), Route::FanOut, T0),
        ReplyOutcome::Ignored
    );
    assert_eq!(
        f.on_reply(chunk(m, 6 * C, C), Route::FanOut, T0),
        ReplyOutcome::Ignored,
        "already held"
    );
    // Chunks 1-3 (asked), 4 and 5 (asked next), then 6 once, not twice.
    for k in 1..4 {
        f.on_reply(chunk(m, k * C, C), Route::FanOut, T0);
    }
    assert_eq!(offsets(&poll(&mut f, T0)), [4 * C, 5 * C, 7 * C]);
    f.on_reply(chunk(m, 5 * C, C), Route::FanOut, T0);
    let out = f.on_reply(chunk(m, 4 * C, C), Route::FanOut, T0);
    assert_eq!(appended(&out), Some((4 * C, 3 * C, false)));
}

#[test]
fn chunks_out_of_range_on_the_blob_topic_are_rejected() {
    let m = module(40 * C + 7);
    let mut f = Fetcher::new();
    f.want(m, 0);
    poll(&mut f, T0);
    let forged = |offset: u64, len: u64, total: u64| BlobReply::Chunk {
        digest: m.digest,
        offset,
        total,
        data: vec![9; len as usize],
    };
    for (what, reply) in [
        ("past the end", forged(40 * C, C, m.size)),
        ("an offset that overflows", forged(u64::MAX - 1, C, m.size)),
        ("another total", forged(5 * C, C, m.size + 1)),
        ("empty", forged(5 * C, 0, m.size)),
        ("longer than a chunk", forged(5 * C, C + 1, m.size)),
        ("beyond what may be held ahead", forged(AHEAD, C, m.size)),
        ("overlapping a request", forged(C / 2, C, m.size)),
        ("a short answer to a request", forged(0, C - 1, m.size)),
    ] {
        assert_eq!(
            f.on_reply(reply, Route::FanOut, T0),
            ReplyOutcome::Ignored,
            "{what}"
        );
    }
    assert_eq!(
        offsets(&poll(&mut f, T0)),
        [] as [u64; 0],
        "nothing was taken: the window is still the four requests"
    );
    assert!(appended(&f.on_reply(chunk(m, 0, C), Route::FanOut, T0)).is_some());
    assert_eq!(
        offsets(&poll(&mut f, T0)),
        [4 * C],
        "and it slides as usual"
    );
}

#[test]
fn requests_wait_for_the_blob_topic_then_go_per_node() {
    let m = module(2 * C);
    let mut f = Fetcher::new();
    f.want(m, 0);
    assert_eq!(
        f.fan_out_topics().collect::<Vec<_>>(),
        [(m.digest, 0), (m.digest, 1)]
    );
    assert!(f.poll(T0, |_, _| false).is_empty(), "not subscribed yet");
    assert!(f.holding());
    let granted = f.poll(10 * MS, |_, _| true);
    assert_eq!(routes(&granted), [Route::FanOut, Route::FanOut]);
    assert!(!f.holding());

    let mut g = Fetcher::new();
    g.want(m, 0);
    assert!(g.poll(T0, |_, _| false).is_empty());
    assert!(g.poll(SUBSCRIBE_WAIT - MS, |_, _| false).is_empty());
    let late = g.poll(SUBSCRIBE_WAIT, |_, _| false);
    assert_eq!(routes(&late), [Route::Direct, Route::Direct]);
    assert!(!g.holding());
    assert_eq!(g.fan_out_topics().count(), 0, "no subscription needed");
}

#[test]
fn a_hub_that_does_not_fan_out_is_asked_per_node() {
    let m = module(3 * C);
    let mut f = Fetcher::new();
    f.want(m, 0);
    assert_eq!(routes(&poll(&mut f, T0)), [Route::FanOut; 3]);
    let first_retry = poll(&mut f, REQUEST_TIMEOUT);
    assert_eq!(routes(&first_retry), [Route::FanOut; 3], "a slow hub");
    let second_retry = poll(&mut f, 2 * REQUEST_TIMEOUT);
    assert_eq!(routes(&second_retry), [Route::Direct; 3], "no hub fans out");
    assert_eq!(f.fan_out_topics().count(), 0);
    assert!(appended(&f.on_reply(chunk(m, 0, C), Route::Direct, T0)).is_some());

    // One that does, but is slow, keeps fanning out.
    let mut g = Fetcher::new();
    g.want(m, 0);
    poll(&mut g, T0);
    g.on_reply(chunk(m, 0, C), Route::FanOut, T0);
    poll(&mut g, REQUEST_TIMEOUT);
    assert_eq!(
        routes(&poll(&mut g, 2 * REQUEST_TIMEOUT)),
        [Route::FanOut; 2]
    );
}

#[test]
fn a_per_node_fetcher_never_fans_out() {
    let m = module(2 * C);
    let mut f = Fetcher::per_node();
    f.want(m, 0);
    assert_eq!(f.fan_out_topics().count(), 0);
    assert_eq!(routes(&f.poll(T0, |_, _| true)), [Route::Direct; 2]);
    assert!(!f.holding());
}

#[test]
fn subscriptions_follow_the_chunks_still_needed() {
    let m = module(10 * C + 3);
    let mut f = Fetcher::new();
    f.want(m, 0);
    let chunks = |f: &Fetcher| f.fan_out_topics().map(|(_, c)| c).collect::<Vec<_>>();
    assert_eq!(chunks(&f), [0, 1, 2, 3, 4, 5], "the window and two more");
    poll(&mut f, T0);
    f.on_reply(chunk(m, 0, C), Route::FanOut, T0);
    f.on_reply(chunk(m, C, C), Route::FanOut, T0);
    f.on_reply(chunk(m, 3 * C, C), Route::FanOut, T0);
    assert_eq!(chunks(&f), [2, 4, 5, 6, 7], "chunk 3 is held already");
    for k in 2..10 {
        f.on_reply(chunk(m, k * C, C), Route::FanOut, T0);
        poll(&mut f, T0);
    }
    assert_eq!(chunks(&f), [10], "the short last chunk");
}

#[test]
fn an_ask_waits_for_its_own_chunk_topic() {
    let m = module(4 * C);
    let mut f = Fetcher::new();
    f.want(m, 0);
    let asks = f.poll(T0, |_, c| c < 2);
    assert_eq!(offsets(&asks), [0, C], "the granted chunks, in order");
    assert!(f.holding());
    assert_eq!(offsets(&f.poll(MS, |_, c| c < 3)), [2 * C]);
    assert_eq!(offsets(&f.poll(2 * MS, |_, _| true)), [3 * C]);
    assert!(!f.holding());
}
