//! Content addresses of modules: SHA-256 digests.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

/// SHA-256 of a module's bytes. Modules are addressed by content everywhere: in desired
/// states, blob transfers, the hub's blob store and the agents' caches.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// Length of the lowercase hex form.
    pub const HEX_LEN: usize = 64;

    /// Writes the lowercase hex form into `out` and returns it as a `&str`.
    pub fn to_hex_buf<'a>(&self, out: &'a mut [u8; 64]) -> &'a str {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (i, byte) in self.0.iter().enumerate() {
            out[2 * i] = HEX[usize::from(byte >> 4)];
            out[2 * i + 1] = HEX[usize::from(byte & 0x0f)];
        }
        // Only ASCII hex digits were written.
        core::str::from_utf8(out).unwrap_or_default()
    }

    /// The lowercase hex form as an owned string.
    pub fn to_hex(&self) -> alloc::string::String {
        let mut buf = [0u8; 64];
        alloc::string::String::from(self.to_hex_buf(&mut buf))
    }

    /// The first 12 hex digits, for tables and log lines.
    pub fn short(&self) -> alloc::string::String {
        let mut hex = self.to_hex();
        hex.truncate(12);
        hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        f.write_str(self.to_hex_buf(&mut buf))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseDigestError {
    /// Not 64 characters long (an optional `sha256:` prefix is allowed).
    #[error("digest must be 64 hex digits, got {0} characters")]
    Length(usize),
    /// A character other than `0-9a-fA-F`.
    #[error("digest has a non-hex character at position {0}")]
    NotHex(usize),
}

impl FromStr for Digest {
    type Err = ParseDigestError;

    /// Parses 64 hex digits, optionally prefixed with `sha256:`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        if hex.len() != Self::HEX_LEN {
            return Err(ParseDigestError::Length(hex.len()));
        }
        let mut out = [0u8; 32];
        let bytes = hex.as_bytes();
        for (i, slot) in out.iter_mut().enumerate() {
            let hi = nibble(bytes[2 * i]).ok_or(ParseDigestError::NotHex(2 * i))?;
            let lo = nibble(bytes[2 * i + 1]).ok_or(ParseDigestError::NotHex(2 * i + 1))?;
            *slot = (hi << 4) | lo;
        }
        Ok(Digest(out))
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn hex_round_trip() {
        let d = Digest([0xab; 32]);
        let s = d.to_string();
        assert_eq!(s.len(), 64);
        assert!(s.starts_with("abab"));
        assert_eq!(s.parse::<Digest>().unwrap(), d);
        assert_eq!(alloc::format!("sha256:{s}").parse::<Digest>().unwrap(), d);
        assert_eq!(d.short(), "abababababab");
    }

    #[test]
    fn rejects_bad_hex() {
        assert_eq!("abc".parse::<Digest>(), Err(ParseDigestError::Length(3)));
        let mut s = "0".repeat(64);
        s.replace_range(10..11, "g");
        assert_eq!(s.parse::<Digest>(), Err(ParseDigestError::NotHex(10)));
    }
}
