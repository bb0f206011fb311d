//! The ABI's transaction encoding: an array of `struct wf_op { u32 kind, ptr, len, ptr2,
//! len2; }` on the stack, shared by I2C and SPI.

use crate::error::{Error, Result};

/// The most operations one transaction may have.
pub const MAX_OPS: usize = 16;
/// The most data bytes one transaction may move, all operations together.
pub const MAX_BYTES: usize = 4096;

pub(crate) const READ: u32 = 0;
pub(crate) const WRITE: u32 = 1;
pub(crate) const TRANSFER: u32 = 2;
pub(crate) const TRANSFER_IN_PLACE: u32 = 3;
pub(crate) const DELAY_NS: u32 = 4;

/// One `wf_op`: five `u32`s, 20 bytes, little-endian because wasm is.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RawOp {
    pub kind: u32,
    pub ptr: u32,
    pub len: u32,
    pub ptr2: u32,
    pub len2: u32,
}

const _: () = assert!(core::mem::size_of::<RawOp>() == 20);

impl RawOp {
    /// An op whose buffer the host reads from.
    pub fn reads_from(kind: u32, data: &[u8]) -> RawOp {
        RawOp {
            kind,
            ptr: data.as_ptr() as usize as u32,
            len: data.len() as u32,
            ..RawOp::default()
        }
    }

    /// An op whose buffer the host writes into. The pointer comes from `&mut`, so the
    /// compiler knows the host call may change the bytes.
    pub fn writes_into(kind: u32, data: &mut [u8]) -> RawOp {
        RawOp {
            kind,
            ptr: data.as_mut_ptr() as usize as u32,
            len: data.len() as u32,
            ..RawOp::default()
        }
    }
}

/// Up to [`MAX_OPS`] encoded operations.
pub(crate) struct Ops {
    ops: [RawOp; MAX_OPS],
    n: usize,
}

impl Ops {
    pub fn new() -> Ops {
        Ops {
            ops: [RawOp::default(); MAX_OPS],
            n: 0,
        }
    }

    /// Appends `op`; `Err(TooLarge)` past [`MAX_OPS`], as the host would answer.
    pub fn push(&mut self, op: RawOp) -> Result<()> {
        let slot = self.ops.get_mut(self.n).ok_or(Error::TooLarge)?;
        *slot = op;
        self.n += 1;
        Ok(())
    }

    /// `(ops_ptr, n_ops)` for the host call.
    pub fn raw(&self) -> (i32, i32) {
        (crate::sys::ptr(self.ops.as_ptr()), self.n as i32)
    }

    #[cfg(test)]
    pub fn as_slice(&self) -> &[RawOp] {
        &self.ops[..self.n]
    }
}
