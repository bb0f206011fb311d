//! The deployment's persistent key-value store on this node (capability `kv`). A write that
//! returned `Ok` is on disk. Keys are 1 to 128 bytes of UTF-8, values up to
//! [`VALUE_MAX`] bytes.

use crate::error::{Error, Result};
use crate::sys;

/// The largest value the host stores, in bytes.
pub const VALUE_MAX: usize = 4096;

/// The raw call: copies up to `buf.len()` bytes of the value into `buf` and returns the
/// value's full length, or `Ok(None)` if there is no such key.
pub fn get_raw(key: &str, buf: &mut [u8]) -> Result<Option<usize>> {
    let (kp, kl) = sys::slice(key.as_bytes());
    let (bp, bl) = sys::slice_mut(buf);
    // SAFETY: both ranges are live slices in our memory; the host writes only into `buf`.
    match Error::check(unsafe { sys::kv_get(kp, kl, bp, bl) }) {
        Ok(len) => Ok(Some(len as usize)),
        Err(Error::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `key`'s value, read into `buf`; `Ok(None)` if absent, `Err(TooLarge)` if it does not fit
/// (a partial value is never returned: use [`len`] to size the buffer).
pub fn get<'a>(key: &str, buf: &'a mut [u8]) -> Result<Option<&'a [u8]>> {
    match get_raw(key, buf)? {
        None => Ok(None),
        Some(len) if len > buf.len() => Err(Error::TooLarge),
        Some(len) => Ok(Some(&buf[..len])),
    }
}

/// The length of `key`'s value, or `Ok(None)` if absent.
pub fn len(key: &str) -> Result<Option<usize>> {
    get_raw(key, &mut [])
}

/// Stores `value` under `key`. `Err(NoSpace)` over the quota, `Err(TooLarge)` over the limits.
pub fn set(key: &str, value: &[u8]) -> Result<()> {
    let (kp, kl) = sys::slice(key.as_bytes());
    let (vp, vl) = sys::slice(value);
    // SAFETY: both ranges are live slices in our memory; the host only reads them.
    Error::check(unsafe { sys::kv_set(kp, kl, vp, vl) }).map(drop)
}

/// Removes `key`; `Ok(false)` if it was not there.
pub fn delete(key: &str) -> Result<bool> {
    let (kp, kl) = sys::slice(key.as_bytes());
    // SAFETY: a live slice in our memory; the host only reads it.
    match Error::check(unsafe { sys::kv_delete(kp, kl) }) {
        Ok(_) => Ok(true),
        Err(Error::NotFound) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A number stored by [`set_u64`]: **decimal ASCII text** (`"42"`), so it reads the same in
/// any KV dump and from other languages. `Ok(None)` if absent; `Err(InvalidArgument)` if the
/// value is not a decimal number.
pub fn get_u64(key: &str) -> Result<Option<u64>> {
    let mut buf = [0u8; 20]; // u64::MAX has 20 digits
    match get(key, &mut buf) {
        Ok(None) => Ok(None),
        Ok(Some(text)) => parse_u64(text).map(Some).ok_or(Error::InvalidArgument),
        Err(Error::TooLarge) => Err(Error::InvalidArgument),
        Err(e) => Err(e),
    }
}

/// Stores `n` as decimal ASCII text (see [`get_u64`]).
pub fn set_u64(key: &str, n: u64) -> Result<()> {
    let mut buf = [0u8; 20];
    set(key, format_u64(n, &mut buf))
}

fn parse_u64(text: &[u8]) -> Option<u64> {
    core::str::from_utf8(text).ok()?.parse().ok()
}

/// `n` in decimal, written to the end of `buf`.
fn format_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u64_text() {
        let mut b = [0u8; 20];
        assert_eq!(format_u64(0, &mut b), b"0");
        assert_eq!(format_u64(1234, &mut b), b"1234");
        assert_eq!(format_u64(u64::MAX, &mut b), b"18446744073709551615");
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"x"), None);
    }
}
