//! Host functions of capabilities `publish` and `subscribe`. Topics are relative to the
//! workload's namespace and checked with the contract's own rules (`wasmfleet_proto::topic`).
//! The runtime keeps each instance's subscription filters; the board forwards their union
//! upstream ([`crate::Instance::subscriptions`]) and hands matching messages to
//! [`crate::Instance::deliver_message`].

use core::ptr::NonNull;

use alloc::string::ToString;
use wasmfleet_proto::topic::{check_app_filter, check_app_topic, filter_covers, filter_matches};
use wasmtime::{Caller, Func, Store};

use super::{Host, with_guest};
use crate::abi::{errno, limits};
use crate::guest::{bytes, copy_out, text};
use crate::platform::Platform;

pub(super) fn func<P: Platform + 'static>(store: &mut Store<Host<P>>, name: &str) -> Option<Func> {
    let s = &mut *store;
    Some(match name {
        "publish" => Func::wrap(
            s,
            |mut c: Caller<'_, Host<P>>, tp: i32, tl: i32, pp: i32, pl: i32| {
                with_guest(&mut c, |mem, host| {
                    let topic = text(mem, tp, tl)?;
                    check_app_topic(topic).map_err(|_| errno::INVALID_ARGUMENT)?;
                    let caps = &host.api.workload.capabilities;
                    if !caps.publish.iter().any(|g| filter_matches(g, topic)) {
                        return Err(errno::NOT_PERMITTED);
                    }
                    let payload = bytes(mem, pp, pl)?;
                    if payload.len() > limits::PAYLOAD {
                        return Err(errno::TOO_LARGE);
                    }
                    let now = host.platform.now_ms();
                    if !host.api.publish.take(now) {
                        return Err(errno::BUSY);
                    }
                    let namespace = &host.api.workload.namespace;
                    match host.platform.publish(namespace, topic, payload) {
                        Ok(()) => Ok(0),
                        Err(_) => Err(errno::BUSY),
                    }
                })
            },
        ),
        "subscribe" => Func::wrap(s, |mut c: Caller<'_, Host<P>>, fp: i32, fl: i32| {
            with_guest(&mut c, |mem, host| {
                let filter = text(mem, fp, fl)?;
                check_app_filter(filter).map_err(|_| errno::INVALID_ARGUMENT)?;
                let api = &mut host.api;
                let caps = &api.workload.capabilities;
                if !caps.subscribe.iter().any(|g| filter_covers(g, filter)) {
                    return Err(errno::NOT_PERMITTED);
                }
                if api.subscriptions.len() >= limits::SUBSCRIPTIONS {
                    return Err(errno::TOO_MANY);
                }
                let handle = api.next_subscription;
                api.next_subscription = handle.checked_add(1).ok_or(errno::TOO_MANY)?;
                api.subscriptions.push((handle, filter.to_string()));
                Ok(handle)
            })
        }),
        "unsubscribe" => Func::wrap(s, |mut c: Caller<'_, Host<P>>, handle: i32| {
            let subs = &mut c.data_mut().api.subscriptions;
            match subs.iter().position(|(h, _)| *h == handle) {
                Some(i) => {
                    subs.remove(i);
                    0
                }
                None => errno::BAD_HANDLE,
            }
        }),
        "message_topic" => Func::wrap(s, |mut c: Caller<'_, Host<P>>, bp: i32, bl: i32| {
            with_guest(&mut c, |mem, host| {
                let m = host.api.current.as_ref().ok_or(errno::BAD_HANDLE)?;
                copy_out(mem, bp, bl, m.topic())
            })
        }),
        "message_payload" => Func::wrap(s, |mut c: Caller<'_, Host<P>>, bp: i32, bl: i32| {
            with_guest(&mut c, |mem, host| {
                let m = host.api.current.as_ref().ok_or(errno::BAD_HANDLE)?;
                copy_out(mem, bp, bl, m.payload())
            })
        }),
        _ => return None,
    })
}

/// The message `on_message` is handling, borrowed from the arguments of
/// [`crate::Instance::deliver_message`] rather than copied: a payload may be 16 KiB, a good
/// part of a small device's free heap.
pub(crate) struct Current {
    topic: NonNull<[u8]>,
    payload: NonNull<[u8]>,
}

impl Current {
    /// # Safety
    ///
    /// `topic` and `payload` must stay valid and unchanged for as long as the value lives:
    /// the instance sets it right before calling `on_message` and drops it right after.
    pub unsafe fn new(topic: &[u8], payload: &[u8]) -> Current {
        Current {
            topic: NonNull::from(topic),
            payload: NonNull::from(payload),
        }
    }

    fn topic(&self) -> &[u8] {
        // SAFETY: valid while `self` lives (the contract of `new`); only read.
        unsafe { self.topic.as_ref() }
    }

    fn payload(&self) -> &[u8] {
        // SAFETY: as in `topic`.
        unsafe { self.payload.as_ref() }
    }
}

/// Sustained publishes per second, and the burst a quiet module may spend at once (as on the
/// Linux agent).
const PUBLISH_RATE: u64 = 100;
const PUBLISH_BURST: u64 = 200;

/// A token bucket in thousandths of a token, on the platform's milliseconds (integers: these
/// cores have no double-precision FPU).
#[derive(Debug)]
pub(crate) struct TokenBucket {
    milli: u64,
    at_ms: u64,
}

impl Default for TokenBucket {
    fn default() -> TokenBucket {
        TokenBucket {
            milli: PUBLISH_BURST * 1000,
            at_ms: 0,
        }
    }
}

impl TokenBucket {
    /// Takes one token at `now_ms`, if there is one.
    pub fn take(&mut self, now_ms: u64) -> bool {
        // One token per 1000 / PUBLISH_RATE ms: PUBLISH_RATE thousandths per millisecond.
        let elapsed = now_ms.saturating_sub(self.at_ms);
        self.at_ms = self.at_ms.max(now_ms);
        self.milli = self
            .milli
            .saturating_add(elapsed.saturating_mul(PUBLISH_RATE))
            .min(PUBLISH_BURST * 1000);
        if self.milli < 1000 {
            return false;
        }
        self.milli -= 1000;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishing_is_rate_limited_with_a_burst() {
        let mut b = TokenBucket::default();
        let sent = (0..300).filter(|_| b.take(1_000)).count();
        assert_eq!(sent, 200, "the burst, then nothing in the same millisecond");
        assert!(!b.take(1_009), "0.9 tokens after 9 ms");
        assert!(b.take(1_010), "one token per 10 ms");
        assert!(!b.take(1_010));
        assert_eq!(
            (0..300).filter(|_| b.take(100_000)).count(),
            200,
            "refilled, capped"
        );
    }
}
