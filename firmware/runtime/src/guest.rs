//! Reading and writing guest memory for host calls: every `(ptr, len)` is checked against the
//! memory's current size before it is touched; a bad range is `INVALID_ARGUMENT`, never a
//! panic. Mirrors the Linux agent's `runtime/host/guest.rs`.

use core::ops::Range;

use crate::abi::errno;

/// A host call's result: the value, or an ABI error code.
pub type CallResult = Result<i32, i32>;

/// The guest range `ptr .. ptr + len` of a memory of `size` bytes (both read as unsigned).
pub fn range(size: usize, ptr: i32, len: i32) -> Result<Range<usize>, i32> {
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    match ptr.checked_add(len) {
        Some(end) if end <= size => Ok(ptr..end),
        _ => Err(errno::INVALID_ARGUMENT),
    }
}

/// The bytes at `ptr .. ptr + len`.
pub fn bytes(mem: &[u8], ptr: i32, len: i32) -> Result<&[u8], i32> {
    range(mem.len(), ptr, len).map(|r| &mem[r])
}

/// The UTF-8 text at `ptr .. ptr + len`.
pub fn text(mem: &[u8], ptr: i32, len: i32) -> Result<&str, i32> {
    core::str::from_utf8(bytes(mem, ptr, len)?).map_err(|_| errno::INVALID_ARGUMENT)
}

/// Copies `min(value.len(), buf_len)` bytes of `value` to `buf` and returns `value.len()`: the
/// ABI's caller-provided buffer convention.
pub fn copy_out(mem: &mut [u8], buf: i32, buf_len: i32, value: &[u8]) -> CallResult {
    let dest = range(mem.len(), buf, buf_len)?;
    let n = value.len().min(dest.len());
    mem[dest.start..dest.start + n].copy_from_slice(&value[..n]);
    i32::try_from(value.len()).map_err(|_| errno::TOO_LARGE)
}

/// Folds a call result into the `i32` the guest receives.
pub fn ret(r: CallResult) -> i32 {
    r.unwrap_or_else(|e| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked_including_overflow() {
        assert_eq!(range(10, 2, 8), Ok(2..10));
        assert_eq!(range(10, 2, 9), Err(errno::INVALID_ARGUMENT));
        assert_eq!(range(10, -1, 1), Err(errno::INVALID_ARGUMENT));
        assert_eq!(range(10, 1, -1), Err(errno::INVALID_ARGUMENT));
        let mut mem = [0u8; 8];
        assert_eq!(copy_out(&mut mem, 4, 2, b"hello"), Ok(5));
        assert_eq!(&mem[4..], b"he\0\0");
        assert_eq!(text(b"\xff", 0, 1), Err(errno::INVALID_ARGUMENT));
    }
}
