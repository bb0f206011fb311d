//! Modules by content address: the on-disk store ([`BlobStore`]) and the sans-IO chunk
//! requester ([`Fetcher`]) that fills it over the hub link, from chunks' fleet-wide topics
//! (fan-out) or the node's own.

mod fetcher;
mod store;

pub use fetcher::{
    AHEAD, Ask, FAN_OUT_TRIES, Fetcher, REQUEST_TIMEOUT, RETRY_AFTER, ReplyOutcome, Route,
    SUBSCRIBE_WAIT, SUBSCRIBED_CHUNKS, WINDOW,
};
pub use store::{BlobError, BlobStore, SPARE_BLOBS};
