//! Modules by content address: the on-disk store ([`BlobStore`]) and the sans-IO chunk
//! requester ([`Fetcher`]) that fills it over the hub link.

mod fetcher;
mod store;

pub use fetcher::{Fetcher, REQUEST_TIMEOUT, RETRY_AFTER, ReplyOutcome, WINDOW};
pub use store::{BlobError, BlobStore, SPARE_BLOBS};
