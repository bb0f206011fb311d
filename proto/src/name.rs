//! Names of nodes, deployments and workloads.
//!
//! Names appear inside MQTT topics, so they must never contain `/`, `+` or `#`. The rule is
//! the Kubernetes DNS-label rule (RFC 1123) extended with `.`, which every broker accepts and
//! every kubectl user already knows.

use crate::error::NameError;

/// Longest allowed name, as for a Kubernetes label value.
pub const MAX_NAME_LEN: usize = 63;

/// Checks that `name` may be used as a node, deployment or workload name.
pub fn validate(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.len()));
    }
    let bytes = name.as_bytes();
    let allowed = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.';
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !bytes.iter().all(|&c| allowed(c)) || !edge(bytes[0]) || !edge(bytes[bytes.len() - 1]) {
        return Err(NameError::Invalid(alloc::string::String::from(name)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for ok in ["a", "node-1", "gw.site-3", "0abc9"] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_topic_metacharacters_and_bad_edges() {
        for bad in ["a/b", "a+b", "a#", "-a", "a-", "A", "a b", ".a"] {
            assert!(matches!(validate(bad), Err(NameError::Invalid(_))), "{bad}");
        }
        assert_eq!(validate(""), Err(NameError::Empty));
        assert_eq!(validate(&"a".repeat(64)), Err(NameError::TooLong(64)));
    }
}
