//! Typed errors of the wire contract. Decoding never panics: every malformed input maps to one
//! of these.

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The payload had no bytes at all.
    #[error("empty frame")]
    Empty,
    /// The frame is larger than [`crate::MAX_FRAME_LEN`].
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Length of the rejected frame.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The leading version byte names a wire version this build does not speak.
    #[error("unsupported wire version {found} (this build speaks version {expected})")]
    UnsupportedVersion {
        /// Version byte found in the frame.
        found: u8,
        /// Version this build speaks.
        expected: u8,
    },
    /// The frame ended before the message did.
    #[error("truncated frame: the message ends early")]
    Truncated,
    /// The bytes do not form a valid message of the expected type.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// A valid message was followed by extra bytes.
    #[error("{0} unexpected trailing bytes after the message")]
    TrailingBytes(usize),
}

/// Why a node or workload name is not allowed on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty name.
    #[error("name is empty")]
    Empty,
    /// Longer than [`crate::name::MAX_NAME_LEN`].
    #[error("name is {0} characters long; the limit is 63")]
    TooLong(usize),
    /// A character outside `a-z 0-9 - .`, or a name that does not start and end alphanumeric.
    #[error(
        "name {0:?} is invalid: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
    )]
    Invalid(alloc::string::String),
}
