//! Application messages over MQTT (capabilities `publish`, `subscribe`). Topics are relative
//! to the deployment's namespace; the host adds and strips the prefix.

use crate::error::{Error, Result};
use crate::sys;
use core::marker::PhantomData;

/// The largest payload the host publishes, in bytes.
pub const PAYLOAD_MAX: usize = 16 * 1024;

/// Publishes `payload` to `topic` (QoS 1, not retained). `Err(Busy)` over the rate limit,
/// `Err(NotPermitted)` outside `capabilities.publish`.
pub fn publish(topic: &str, payload: &[u8]) -> Result<()> {
    let (tp, tl) = sys::slice(topic.as_bytes());
    let (pp, pl) = sys::slice(payload);
    // SAFETY: both ranges are live slices in our memory; the host only reads them.
    Error::check(unsafe { sys::publish(tp, tl, pp, pl) }).map(drop)
}

/// Subscribes to `filter` (MQTT wildcards `+`, `#` allowed). Messages arrive in
/// [`App::on_message`](crate::App::on_message). At most 16 subscriptions.
pub fn subscribe(filter: &str) -> Result<Subscription> {
    let (fp, fl) = sys::slice(filter.as_bytes());
    // SAFETY: a live slice in our memory; the host only reads it.
    Error::check(unsafe { sys::subscribe(fp, fl) }).map(|h| Subscription(h as i32))
}

/// A subscription handle, `Copy` so an app can keep it and compare with
/// [`Message::subscription`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Subscription(i32);

impl Subscription {
    /// Ends the subscription. Messages already queued may still arrive.
    pub fn unsubscribe(self) -> Result<()> {
        // SAFETY: plain integer.
        Error::check(unsafe { sys::unsubscribe(self.0) }).map(drop)
    }

    /// The host's handle number.
    pub fn id(self) -> i32 {
        self.0
    }

    /// The subscription with handle `id`, as `on_message` receives it.
    pub fn from_id(id: i32) -> Subscription {
        Subscription(id)
    }
}

/// The message being handled. The host only serves its topic and payload during
/// `on_message`, so the lifetime ties a `Message` to that call: it cannot be kept.
#[derive(Debug)]
pub struct Message<'call> {
    subscription: Subscription,
    topic_len: usize,
    payload_len: usize,
    _call: PhantomData<&'call ()>,
}

impl Message<'_> {
    /// Made by the `app!` glue from `on_message`'s arguments.
    #[doc(hidden)]
    pub fn new(subscription: i32, topic_len: i32, payload_len: i32) -> Self {
        Message {
            subscription: Subscription(subscription),
            topic_len: topic_len.max(0) as usize,
            payload_len: payload_len.max(0) as usize,
            _call: PhantomData,
        }
    }

    /// The subscription it arrived on.
    pub fn subscription(&self) -> Subscription {
        self.subscription
    }

    /// The topic's length in bytes.
    pub fn topic_len(&self) -> usize {
        self.topic_len
    }

    /// The payload's length in bytes.
    pub fn payload_len(&self) -> usize {
        self.payload_len
    }

    /// The topic (relative to the namespace), read into `buf`. If `buf` is shorter than
    /// [`topic_len`](Self::topic_len), the topic is cut at a character boundary.
    pub fn topic<'b>(&self, buf: &'b mut [u8]) -> &'b str {
        let (bp, bl) = sys::slice_mut(buf);
        // SAFETY: a live buffer in our memory that the host writes into.
        let n = Error::check(unsafe { sys::message_topic(bp, bl) }).unwrap_or(0) as usize;
        let bytes = &buf[..n.min(buf.len())];
        match core::str::from_utf8(bytes) {
            Ok(s) => s,
            // Only a cut inside a character can fail: topics are UTF-8.
            Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
        }
    }

    /// The payload, read into `buf`: the first `min(payload_len, buf.len())` bytes.
    pub fn payload<'b>(&self, buf: &'b mut [u8]) -> &'b [u8] {
        let (bp, bl) = sys::slice_mut(buf);
        // SAFETY: a live buffer in our memory that the host writes into.
        let n = Error::check(unsafe { sys::message_payload(bp, bl) }).unwrap_or(0) as usize;
        &buf[..n.min(buf.len())]
    }
}
