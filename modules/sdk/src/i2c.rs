//! I2C buses (capability `i2c`) as an embedded-hal 1.0 `I2c`, so sensor driver crates work
//! unchanged. A whole `transaction` is one host call: repeated starts, one stop, and read
//! data written straight into the caller's buffers.

use crate::error::{Error, Result};
use crate::ops::{self, Ops, RawOp};
use crate::sys;
use embedded_hal::i2c::{ErrorType, Operation, SevenBitAddress};

/// An I2C bus opened by name (`i2c-1`). Addresses are 7-bit.
#[derive(Debug)]
pub struct I2c {
    bus: i32,
}

impl I2c {
    /// Opens bus `name`. `Err(NotPermitted)` unless `capabilities.i2c` grants it,
    /// `Err(NotFound)` if the node has no such bus.
    pub fn open(name: &str) -> Result<I2c> {
        let (np, nl) = sys::slice(name.as_bytes());
        // SAFETY: a live slice in our memory; the host only reads it.
        let bus = Error::check(unsafe { sys::i2c_open(np, nl) })?;
        Ok(I2c { bus: bus as i32 })
    }

    /// The host's handle number.
    pub fn handle(&self) -> i32 {
        self.bus
    }
}

impl ErrorType for I2c {
    type Error = Error;
}

impl embedded_hal::i2c::I2c<SevenBitAddress> for I2c {
    /// At most [`MAX_OPS`](crate::ops::MAX_OPS) operations and
    /// [`MAX_BYTES`](crate::ops::MAX_BYTES) bytes; more is `Err(TooLarge)`.
    fn transaction(&mut self, address: u8, operations: &mut [Operation<'_>]) -> Result<()> {
        let mut raw = Ops::new();
        for op in operations.iter_mut() {
            raw.push(match op {
                Operation::Read(buf) => RawOp::writes_into(ops::READ, buf),
                Operation::Write(data) => RawOp::reads_from(ops::WRITE, data),
            })?;
        }
        let (ops_ptr, n_ops) = raw.raw();
        // SAFETY: every op points into a buffer borrowed from `operations` for this whole
        // call (reads from `&mut`), and `raw` lives on our stack until the call returns.
        Error::check(unsafe { sys::i2c_transaction(self.bus, address.into(), ops_ptr, n_ops) })
            .map(drop)
    }
}
