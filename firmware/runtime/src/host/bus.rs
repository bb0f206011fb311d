//! Host functions of capabilities `i2c` and `spi`: named buses opened by handle, and
//! transactions of up to 16 operations and 4 KiB, run exactly as `embedded_hal`'s
//! `I2c::transaction` and `SpiDevice::transaction` define.
//!
//! As on the Linux agent, each operation's bytes move through one host scratch buffer (the
//! transaction's total, at most [`limits::BUS_BYTES`], freed afterwards): the driver never
//! holds references into guest memory, and overlapping guest buffers cannot alias.

use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use embedded_hal::i2c::{ErrorKind as I2cErrorKind, Operation as I2cOp};
use embedded_hal::spi::Operation as SpiOp;
use wasmtime::{Caller, Func, Store};

use super::{Host, with_guest};
use crate::abi::{errno, limits};
use crate::guest::{CallResult, bytes, range, text};
use crate::platform::Platform;

const READ: u32 = 0;
const WRITE: u32 = 1;
const TRANSFER: u32 = 2;
const TRANSFER_IN_PLACE: u32 = 3;
const DELAY_NS: u32 = 4;

/// One decoded operation: `struct wf_op { kind, ptr, len, ptr2, len2 }`.
#[derive(Debug, Clone, Copy)]
struct Op {
    kind: u32,
    ptr: i32,
    len: usize,
    ptr2: i32,
    len2: usize,
}

type Ops = heapless::Vec<Op, { limits::BUS_OPS }>;

/// Decodes `n` operations at `ptr`, checks their kinds (`spi` allows the SPI-only ones),
/// ranges and sizes, and returns them with their total byte count.
fn decode_ops(mem: &[u8], ptr: i32, n: i32, spi: bool) -> Result<(Ops, usize), i32> {
    let n = usize::try_from(n).map_err(|_| errno::INVALID_ARGUMENT)?;
    if n > limits::BUS_OPS {
        return Err(errno::TOO_LARGE);
    }
    let raw = bytes(mem, ptr, (n * 20) as i32)?;
    let mut total = 0usize;
    let mut ops = Ops::new();
    for chunk in raw.as_chunks::<20>().0 {
        let words = chunk.as_chunks::<4>().0;
        let w = |i: usize| u32::from_le_bytes(words[i]);
        let (kind, ptr, ptr2) = (w(0), w(1) as i32, w(3) as i32);
        let len = range(mem.len(), ptr, w(2) as i32).map(|r| r.len());
        let len2 = range(mem.len(), ptr2, w(4) as i32).map(|r| r.len());
        let op = match kind {
            READ | WRITE => Op {
                kind,
                ptr,
                len: len?,
                ptr2,
                len2: 0,
            },
            TRANSFER if spi => Op {
                kind,
                ptr,
                len: len?,
                ptr2,
                len2: len2?,
            },
            TRANSFER_IN_PLACE if spi => Op {
                kind,
                ptr,
                len: len?,
                ptr2,
                len2: 0,
            },
            // The delay is `len` nanoseconds, not a range.
            DELAY_NS if spi => Op {
                kind,
                ptr,
                len: w(2) as usize,
                ptr2,
                len2: 0,
            },
            _ => return Err(errno::INVALID_ARGUMENT),
        };
        if kind != DELAY_NS {
            total += op.len + op.len2;
        }
        // At most BUS_OPS chunks: the push cannot fail.
        ops.push(op).map_err(|_| errno::TOO_LARGE)?;
    }
    if total > limits::BUS_BYTES {
        return Err(errno::TOO_LARGE);
    }
    Ok((ops, total))
}

/// Host copies of the operations' bytes, in order: reads start zeroed, writes hold the
/// guest's bytes; a transfer has its read buffer, then its write buffer.
fn scratch(mem: &[u8], ops: &[Op], total: usize) -> Vec<u8> {
    let mut buf = vec![0; total];
    let mut at = 0;
    let mut copy = |at: usize, ptr: i32, len: usize| {
        if let Ok(src) = bytes(mem, ptr, len as i32) {
            buf[at..at + len].copy_from_slice(src);
        }
    };
    for op in ops {
        match op.kind {
            READ => at += op.len,
            WRITE | TRANSFER_IN_PLACE => {
                copy(at, op.ptr, op.len);
                at += op.len;
            }
            TRANSFER => {
                copy(at + op.len, op.ptr2, op.len2);
                at += op.len + op.len2;
            }
            _ => {}
        }
    }
    buf
}

/// Copies what the device read back into guest memory.
fn copy_back(mem: &mut [u8], ops: &[Op], buf: &[u8]) {
    let mut at = 0;
    for op in ops {
        if matches!(op.kind, READ | TRANSFER | TRANSFER_IN_PLACE)
            && let Ok(r) = range(mem.len(), op.ptr, op.len as i32)
        {
            mem[r].copy_from_slice(&buf[at..at + op.len]);
        }
        if op.kind != DELAY_NS {
            at += op.len + op.len2;
        }
    }
}

/// Splits the next `n` bytes off `rest`.
fn take<'a>(rest: &mut &'a mut [u8], n: usize) -> &'a mut [u8] {
    let (head, tail) = core::mem::take(rest).split_at_mut(n);
    *rest = tail;
    head
}

/// Opens a granted device by name: its handle (the same for the same name).
fn open(
    name: &str,
    granted: &[alloc::string::String],
    opened: &mut Vec<alloc::string::String>,
    exists: bool,
) -> CallResult {
    if !granted.iter().any(|g| g == name) {
        return Err(errno::NOT_PERMITTED);
    }
    if let Some(i) = opened.iter().position(|n| n == name) {
        return Ok(i as i32);
    }
    if !exists {
        return Err(errno::NOT_FOUND);
    }
    opened.push(name.to_string());
    Ok(opened.len() as i32 - 1)
}

fn i2c_error(kind: I2cErrorKind) -> i32 {
    match kind {
        I2cErrorKind::NoAcknowledge(_) => errno::NO_ACKNOWLEDGE,
        I2cErrorKind::ArbitrationLoss => errno::ARBITRATION_LOSS,
        I2cErrorKind::Bus | I2cErrorKind::Overrun => errno::BUS,
        _ => errno::IO,
    }
}

pub(super) fn func<P: Platform + 'static>(store: &mut Store<Host<P>>, name: &str) -> Option<Func> {
    let s = &mut *store;
    Some(match name {
        "i2c_open" => Func::wrap(s, |mut c: Caller<'_, Host<P>>, np: i32, nl: i32| {
            with_guest(&mut c, |mem, host| {
                let name = text(mem, np, nl)?;
                let exists = host.platform.i2c(name).is_some();
                let api = &mut host.api;
                open(name, &api.workload.capabilities.i2c, &mut api.i2c, exists)
            })
        }),
        "i2c_transaction" => Func::wrap(
            s,
            |mut c: Caller<'_, Host<P>>, bus: i32, address: i32, ops_ptr: i32, n: i32| {
                with_guest(&mut c, |mem, host| {
                    let name = host
                        .api
                        .i2c
                        .get(bus as u32 as usize)
                        .ok_or(errno::BAD_HANDLE)?;
                    let address = u8::try_from(address)
                        .ok()
                        .filter(|a| *a < 0x80)
                        .ok_or(errno::INVALID_ARGUMENT)?;
                    let (ops, total) = decode_ops(mem, ops_ptr, n, false)?;
                    let mut buf = scratch(mem, &ops, total);
                    let mut hal: heapless::Vec<I2cOp<'_>, { limits::BUS_OPS }> =
                        heapless::Vec::new();
                    let mut rest = &mut buf[..];
                    for op in &ops {
                        let b = take(&mut rest, op.len);
                        let op = match op.kind {
                            READ => I2cOp::Read(b),
                            _ => I2cOp::Write(b),
                        };
                        hal.push(op).map_err(|_| errno::TOO_LARGE)?;
                    }
                    let dev = host.platform.i2c(name).ok_or(errno::IO)?;
                    dev.transaction(address, &mut hal).map_err(i2c_error)?;
                    drop(hal);
                    copy_back(mem, &ops, &buf);
                    Ok(0)
                })
            },
        ),
        "spi_open" => Func::wrap(s, |mut c: Caller<'_, Host<P>>, np: i32, nl: i32| {
            with_guest(&mut c, |mem, host| {
                let name = text(mem, np, nl)?;
                let exists = host.platform.spi(name).is_some();
                let api = &mut host.api;
                open(name, &api.workload.capabilities.spi, &mut api.spi, exists)
            })
        }),
        "spi_transaction" => Func::wrap(
            s,
            |mut c: Caller<'_, Host<P>>, dev: i32, ops_ptr: i32, n: i32| {
                with_guest(&mut c, |mem, host| {
                    let name = host
                        .api
                        .spi
                        .get(dev as u32 as usize)
                        .ok_or(errno::BAD_HANDLE)?;
                    let (ops, total) = decode_ops(mem, ops_ptr, n, true)?;
                    let delays: u64 = ops
                        .iter()
                        .filter(|o| o.kind == DELAY_NS)
                        .map(|o| o.len as u64)
                        .sum();
                    if delays > limits::DELAY_NS {
                        return Err(errno::TOO_LARGE);
                    }
                    let mut buf = scratch(mem, &ops, total);
                    let mut hal: heapless::Vec<SpiOp<'_, u8>, { limits::BUS_OPS }> =
                        heapless::Vec::new();
                    let mut rest = &mut buf[..];
                    for op in &ops {
                        let op = match op.kind {
                            READ => SpiOp::Read(take(&mut rest, op.len)),
                            WRITE => SpiOp::Write(take(&mut rest, op.len)),
                            TRANSFER => {
                                let read = take(&mut rest, op.len);
                                SpiOp::Transfer(read, take(&mut rest, op.len2))
                            }
                            TRANSFER_IN_PLACE => SpiOp::TransferInPlace(take(&mut rest, op.len)),
                            _ => SpiOp::DelayNs(op.len as u32),
                        };
                        hal.push(op).map_err(|_| errno::TOO_LARGE)?;
                    }
                    let dev = host.platform.spi(name).ok_or(errno::IO)?;
                    // As on Linux: every SPI failure is a bus error.
                    dev.transaction(&mut hal).map_err(|_| errno::BUS)?;
                    drop(hal);
                    copy_back(mem, &ops, &buf);
                    Ok(0)
                })
            },
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: u32, ptr: u32, len: u32, ptr2: u32, len2: u32) -> [u8; 20] {
        let mut out = [0; 20];
        for (i, w) in [kind, ptr, len, ptr2, len2].iter().enumerate() {
            out[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    #[test]
    fn operations_are_decoded_and_checked() {
        let mut mem = vec![0u8; 8192];
        mem[..20].copy_from_slice(&op(WRITE, 100, 2, 0, 0));
        mem[20..40].copy_from_slice(&op(READ, 200, 3, 0, 0));
        let (ops, total) = decode_ops(&mem, 0, 2, false).unwrap();
        assert_eq!((ops.len(), total), (2, 5));
        assert_eq!(
            decode_ops(&mem, 0, -1, false).unwrap_err(),
            errno::INVALID_ARGUMENT
        );
        assert_eq!(
            decode_ops(&mem, 0, 17, false).unwrap_err(),
            errno::TOO_LARGE
        );
        assert_eq!(
            decode_ops(&mem, 8190, 1, false).unwrap_err(),
            errno::INVALID_ARGUMENT
        );
        mem[..20].copy_from_slice(&op(TRANSFER, 100, 2, 300, 2));
        assert_eq!(
            decode_ops(&mem, 0, 1, false).unwrap_err(),
            errno::INVALID_ARGUMENT
        );
        assert_eq!(decode_ops(&mem, 0, 1, true).unwrap().1, 4);
        mem[..20].copy_from_slice(&op(WRITE, 0, 4097, 0, 0));
        assert_eq!(decode_ops(&mem, 0, 1, false).unwrap_err(), errno::TOO_LARGE);
        mem[..20].copy_from_slice(&op(WRITE, 8000, 193, 0, 0));
        assert_eq!(
            decode_ops(&mem, 0, 1, false).unwrap_err(),
            errno::INVALID_ARGUMENT
        );
        mem[..20].copy_from_slice(&op(DELAY_NS, 0, 4_000_000, 0, 0));
        assert_eq!(
            decode_ops(&mem, 0, 1, true).unwrap().1,
            0,
            "a delay moves no bytes"
        );
    }

    #[test]
    fn transfers_go_through_scratch_and_back() {
        let mut mem = vec![0u8; 64];
        mem[10..12].copy_from_slice(b"hi");
        let ops = [
            Op {
                kind: WRITE,
                ptr: 10,
                len: 2,
                ptr2: 0,
                len2: 0,
            },
            Op {
                kind: TRANSFER,
                ptr: 20,
                len: 2,
                ptr2: 10,
                len2: 2,
            },
            Op {
                kind: DELAY_NS,
                ptr: 0,
                len: 5,
                ptr2: 0,
                len2: 0,
            },
            Op {
                kind: READ,
                ptr: 30,
                len: 1,
                ptr2: 0,
                len2: 0,
            },
        ];
        let mut buf = scratch(&mem, &ops, 7);
        assert_eq!(&buf, b"hi\0\0hi\0");
        buf[2..4].copy_from_slice(b"ok");
        buf[6] = b'!';
        copy_back(&mut mem, &ops, &buf);
        assert_eq!(&mem[20..22], b"ok");
        assert_eq!(mem[30], b'!');
        assert_eq!(&mem[10..12], b"hi", "written bytes are not copied back");
    }
}
