//! The deployment's `spec.config`, read with `config_get`. Values are text; the helpers parse
//! the common shapes (durations, numbers) and fall back to a default with a warning, so a typo
//! in a manifest shows up in `wasmfleet logs` instead of stopping the module.

use crate::error::{Error, Result};
use crate::sys;

/// Reserved key: the name of the node the instance runs on.
pub const NODE: &str = "wasmfleet.node";
/// Reserved key: the deployment's name.
pub const DEPLOYMENT: &str = "wasmfleet.deployment";
/// Reserved key: the workload (instance) name.
pub const WORKLOAD: &str = "wasmfleet.workload";
/// Reserved key: the deployment's namespace.
pub const NAMESPACE: &str = "wasmfleet.namespace";

/// The raw call: copies up to `buf.len()` bytes of `key`'s value into `buf` and returns the
/// value's full length (which may exceed `buf.len()`), or `Err(NotFound)`.
pub fn get_raw(key: &str, buf: &mut [u8]) -> Result<usize> {
    let (kp, kl) = sys::slice(key.as_bytes());
    let (bp, bl) = sys::slice_mut(buf);
    // SAFETY: both ranges are live slices in our memory; the host writes only into `buf`.
    Error::check(unsafe { sys::config_get(kp, kl, bp, bl) }).map(|n| n as usize)
}

/// `key`'s value, or `None` if it is absent, does not fit in `buf`, or is not UTF-8 (the
/// latter two are logged as warnings: a half-read value would be silently wrong).
pub fn get<'a>(key: &str, buf: &'a mut [u8]) -> Option<&'a str> {
    let len = match get_raw(key, buf) {
        Ok(len) => len,
        Err(Error::NotFound) => return None,
        Err(e) => {
            crate::warn!("config {key}: {e}");
            return None;
        }
    };
    if len > buf.len() {
        crate::warn!(
            "config {key}: value of {len} bytes exceeds the {}-byte buffer",
            buf.len()
        );
        return None;
    }
    match core::str::from_utf8(&buf[..len]) {
        Ok(s) => Some(s),
        Err(_) => {
            crate::warn!("config {key}: not UTF-8");
            None
        }
    }
}

/// The node's name (reserved key `wasmfleet.node`), or `None` if it does not fit in `buf`.
pub fn node(buf: &mut [u8]) -> Option<&str> {
    get(NODE, buf)
}

/// A duration in milliseconds: `500ms`, `1s`, `2m`, `1h`, or a plain number of milliseconds.
/// Absent: `default_ms`. Unparsable: `default_ms`, with a warning.
pub fn duration_ms(key: &str, default_ms: u64) -> u64 {
    let mut buf = [0u8; 32];
    match get(key, &mut buf) {
        None => default_ms,
        Some(text) => parse_duration_ms(text).unwrap_or_else(|| {
            crate::warn!("config {key}: \"{text}\" is not a duration (like 500ms, 1s, 2m); using {default_ms}ms");
            default_ms
        }),
    }
}

/// A number (`25`, `-3.5`, `1e3`). Absent: `default`. Unparsable: `default`, with a warning.
pub fn f32(key: &str, default: f32) -> f32 {
    let mut buf = [0u8; 32];
    match get(key, &mut buf) {
        None => default,
        Some(text) => crate::num::parse_f32(text).unwrap_or_else(|| {
            let shown = crate::Fixed::new(default, 3);
            crate::warn!("config {key}: \"{text}\" is not a number; using {shown}");
            default
        }),
    }
}

/// Parses `500ms`, `1s`, `2m`, `1h` or a plain number of milliseconds (whole numbers only).
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit_ms) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (text, 1)
    };
    let n: u64 = digits.trim_end().parse().ok()?;
    n.checked_mul(unit_ms)
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms as p;

    #[test]
    fn durations() {
        assert_eq!(p("500ms"), Some(500));
        assert_eq!(p("1s"), Some(1_000));
        assert_eq!(p("2m"), Some(120_000));
        assert_eq!(p("1h"), Some(3_600_000));
        assert_eq!(p("250"), Some(250));
        assert_eq!(p(" 3 s "), Some(3_000));
        assert_eq!(p("1.5s"), None);
        assert_eq!(p("-1s"), None);
        assert_eq!(p("s"), None);
        assert_eq!(p(""), None);
        assert_eq!(p("99999999999999999999h"), None);
    }
}
