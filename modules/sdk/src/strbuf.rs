//! A fixed-capacity string on the stack, for formatting log lines and topics without an
//! allocator. Overflow truncates (on a character boundary) instead of failing, because a
//! shortened log line is better than none.

use core::fmt;

/// Up to `N` bytes of UTF-8 text built with `write!`; what does not fit is dropped.
///
/// ```ignore
/// let topic: StrBuf<64> = StrBuf::format(format_args!("sensors/{node}/temp"));
/// if topic.truncated() { /* too long */ }
/// ```
#[derive(Clone)]
pub struct StrBuf<const N: usize> {
    bytes: [u8; N],
    len: usize,
    truncated: bool,
}

impl<const N: usize> StrBuf<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        StrBuf {
            bytes: [0; N],
            len: 0,
            truncated: false,
        }
    }

    /// A buffer holding `args` formatted (truncated to `N` bytes).
    pub fn format(args: fmt::Arguments<'_>) -> Self {
        let mut buf = Self::new();
        // The only possible error is our own overflow signal, already recorded in `truncated`.
        let _ = fmt::write(&mut buf, args);
        buf
    }

    /// The text so far.
    pub fn as_str(&self) -> &str {
        // SAFETY: only whole `&str`s, cut on character boundaries, are ever copied in.
        unsafe { core::str::from_utf8_unchecked(&self.bytes[..self.len]) }
    }

    /// The text so far, as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// True if something did not fit and was dropped.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Empties the buffer.
    pub fn clear(&mut self) {
        self.len = 0;
        self.truncated = false;
    }

    /// Shortens the text to at most `max` bytes, cutting back to a character boundary.
    pub(crate) fn cut(&mut self, max: usize) {
        if max < self.len {
            self.len = floor_char_boundary(&self.bytes[..self.len], max);
        }
    }
}

impl<const N: usize> Default for StrBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for StrBuf<N> {
    /// Copies what fits; returns `Err` once something was dropped, which stops `write!`.
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = N - self.len;
        let take = if s.len() <= room {
            s.len()
        } else {
            self.truncated = true;
            floor_char_boundary(s.as_bytes(), room)
        };
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        if self.truncated {
            Err(fmt::Error)
        } else {
            Ok(())
        }
    }
}

impl<const N: usize> fmt::Display for StrBuf<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for StrBuf<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> core::ops::Deref for StrBuf<N> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

/// The largest `i <= max` that does not split a UTF-8 sequence of valid UTF-8 `bytes`.
pub(crate) fn floor_char_boundary(bytes: &[u8], max: usize) -> usize {
    if max >= bytes.len() {
        return bytes.len();
    }
    let mut i = max;
    // Continuation bytes are 0b10xx_xxxx; a boundary is any other byte (or the end).
    while i > 0 && bytes[i] & 0xC0 == 0x80 {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn truncates_on_char_boundary() {
        let mut b = StrBuf::<5>::new();
        b.write_str("ab").unwrap();
        assert!(b.write_str("€x").is_err()); // € is 3 bytes: "ab€" fits exactly
        assert_eq!(b.as_str(), "ab€");
        assert!(b.truncated());
        let b = StrBuf::<4>::format(format_args!("ab€"));
        assert_eq!(b.as_str(), "ab");
        let b = StrBuf::<8>::format(format_args!("t={}", 23.4));
        assert_eq!(&*b, "t=23.4");
        assert!(!b.truncated());
    }
}
