//! Versioned frames: one version byte, then the postcard encoding of one [`Message`].

use alloc::vec::Vec;

use crate::error::DecodeError;
use crate::msg::Message;

/// Version byte of the current wire format. Bump it on any incompatible change.
pub const WIRE_VERSION: u8 = 4;

/// Largest frame any peer accepts. Bounds memory on small devices; the biggest messages are
/// blob chunks ([`crate::MAX_BLOB_CHUNK`]) and desired states of busy gateways.
pub const MAX_FRAME_LEN: usize = 256 * 1024;

/// Encodes `msg` as a frame.
pub fn encode<M: Message>(msg: &M) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(WIRE_VERSION);
    // Serializing into a Vec cannot fail for our message types (no maps with non-string
    // keys, no sequences of unknown length).
    match postcard::to_extend(msg, out) {
        Ok(out) => out,
        Err(_) => unreachable_encode(),
    }
}

#[cold]
fn unreachable_encode() -> Vec<u8> {
    // postcard only fails on sequences without a known length, which no message has.
    panic!("wasmfleet-proto: message failed to serialize")
}

/// Decodes one frame. Rejects empty, oversized, wrong-version, truncated and trailing-garbage
/// input with a typed error; never panics.
pub fn decode<M: Message>(bytes: &[u8]) -> Result<M, DecodeError> {
    if bytes.len() > MAX_FRAME_LEN {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: MAX_FRAME_LEN,
        });
    }
    let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != WIRE_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            found: version,
            expected: WIRE_VERSION,
        });
    }
    let (msg, rest) = postcard::take_from_bytes::<M>(body).map_err(map_postcard)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(msg)
}

fn map_postcard(err: postcard::Error) -> DecodeError {
    use postcard::Error as E;
    match err {
        E::DeserializeUnexpectedEnd => DecodeError::Truncated,
        E::DeserializeBadVarint => DecodeError::Malformed("bad varint"),
        E::DeserializeBadBool => DecodeError::Malformed("bad bool"),
        E::DeserializeBadChar => DecodeError::Malformed("bad char"),
        E::DeserializeBadUtf8 => DecodeError::Malformed("bad UTF-8 in a string"),
        E::DeserializeBadOption => DecodeError::Malformed("bad option tag"),
        E::DeserializeBadEnum => DecodeError::Malformed("unknown enum variant"),
        E::DeserializeBadEncoding => DecodeError::Malformed("bad encoding"),
        _ => DecodeError::Malformed("invalid message"),
    }
}
