//! SPI devices (capability `spi`) as an embedded-hal 1.0 `SpiDevice`: the host holds chip
//! select for the whole transaction, so drivers written for `SpiDevice` work unchanged.

use crate::error::{Error, Result};
use crate::ops::{self, Ops, RawOp};
use crate::sys;
use embedded_hal::spi::{ErrorType, Operation};

/// An SPI device (a bus plus its chip select) opened by name (`spidev0.0`).
#[derive(Debug)]
pub struct SpiDevice {
    device: i32,
}

impl SpiDevice {
    /// Opens device `name`. `Err(NotPermitted)` unless `capabilities.spi` grants it,
    /// `Err(NotFound)` if the node has no such device.
    pub fn open(name: &str) -> Result<SpiDevice> {
        let (np, nl) = sys::slice(name.as_bytes());
        // SAFETY: a live slice in our memory; the host only reads it.
        let device = Error::check(unsafe { sys::spi_open(np, nl) })?;
        Ok(SpiDevice {
            device: device as i32,
        })
    }

    /// The host's handle number.
    pub fn handle(&self) -> i32 {
        self.device
    }
}

impl ErrorType for SpiDevice {
    type Error = Error;
}

/// Encodes one embedded-hal operation as the ABI's `wf_op`.
fn encode(op: &mut Operation<'_, u8>) -> RawOp {
    match op {
        Operation::Read(buf) => RawOp::writes_into(ops::READ, buf),
        Operation::Write(data) => RawOp::reads_from(ops::WRITE, data),
        Operation::Transfer(read, write) => {
            let w = RawOp::reads_from(ops::TRANSFER, write);
            RawOp {
                ptr2: w.ptr,
                len2: w.len,
                ..RawOp::writes_into(ops::TRANSFER, read)
            }
        }
        Operation::TransferInPlace(buf) => RawOp::writes_into(ops::TRANSFER_IN_PLACE, buf),
        Operation::DelayNs(ns) => RawOp {
            kind: ops::DELAY_NS,
            len: *ns,
            ..RawOp::default()
        },
    }
}

impl embedded_hal::spi::SpiDevice<u8> for SpiDevice {
    /// At most [`MAX_OPS`](crate::ops::MAX_OPS) operations and
    /// [`MAX_BYTES`](crate::ops::MAX_BYTES) bytes; more is `Err(TooLarge)`.
    fn transaction(&mut self, operations: &mut [Operation<'_, u8>]) -> Result<()> {
        let mut raw = Ops::new();
        for op in operations.iter_mut() {
            raw.push(encode(op))?;
        }
        let (ops_ptr, n_ops) = raw.raw();
        // SAFETY: every op points into a buffer borrowed from `operations` for this whole
        // call (the ones written to from `&mut`), and `raw` lives on our stack until the call
        // returns.
        Error::check(unsafe { sys::spi_transaction(self.device, ops_ptr, n_ops) }).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_every_variant() {
        let (mut r, w, mut io) = ([0u8; 3], [1u8; 2], [2u8; 4]);
        let mut list = [
            Operation::Transfer(&mut r, &w),
            Operation::TransferInPlace(&mut io),
            Operation::DelayNs(1500),
        ];
        let mut raw = Ops::new();
        for op in list.iter_mut() {
            raw.push(encode(op)).unwrap();
        }
        let got = raw.as_slice();
        assert_eq!((got[0].kind, got[0].len, got[0].len2), (2, 3, 2));
        assert_eq!(got[0].ptr2, w.as_ptr() as usize as u32);
        assert_eq!((got[1].kind, got[1].len), (3, 4));
        assert_eq!((got[2].kind, got[2].ptr, got[2].len), (4, 0, 1500));
        for _ in 3..ops::MAX_OPS {
            raw.push(RawOp::default()).unwrap();
        }
        assert_eq!(raw.push(RawOp::default()), Err(Error::TooLarge));
    }
}
