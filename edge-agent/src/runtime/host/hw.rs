//! Host API capabilities `gpio`, `i2c` and `spi`, over [`crate::devices`].
//!
//! Bus transactions run on tokio's blocking pool (a slow bus must not stall the agent) and are
//! copied: each operation's bytes move between guest memory and a host
//! scratch buffer (at most [`limits::BUS_BYTES`] in all), so the device driver never holds
//! references into guest memory and overlapping guest buffers cannot alias.

use embedded_hal::i2c::Operation as I2cOp;
use embedded_hal::spi::Operation as SpiOp;
use wasmfleet_common::abi::{errno, limits};
use wasmtime::{Caller, Linker};

use super::guest::{CallResult, bytes, range, text};
use super::{Host, M, split, with_guest};
use crate::devices::{DeviceError, EdgeSink, Edges, lock};

fn device_error(e: DeviceError) -> i32 {
    match e {
        DeviceError::NoAcknowledge => errno::NO_ACKNOWLEDGE,
        DeviceError::ArbitrationLoss => errno::ARBITRATION_LOSS,
        DeviceError::Bus => errno::BUS,
        DeviceError::Unsupported => errno::UNSUPPORTED,
        DeviceError::Io => errno::IO,
    }
}

pub(super) fn add_gpio(l: &mut Linker<Host>) -> wasmtime::Result<()> {
    fn pin_of(
        api: &super::Api,
        pin: i32,
    ) -> Result<crate::devices::Shared<Box<dyn crate::devices::GpioPin>>, i32> {
        let pin = u32::try_from(pin).map_err(|_| errno::INVALID_ARGUMENT)?;
        if !api.caps.gpio.contains(&pin) {
            return Err(errno::NOT_PERMITTED);
        }
        api.services.devices.gpio(pin).ok_or(errno::NOT_FOUND)
    }
    l.func_wrap(M, "gpio_read", |mut c: Caller<'_, Host>, pin: i32| {
        with_guest(&mut c, |_, api| {
            let line = pin_of(api, pin)?;
            let level = lock(&line).read().map_err(device_error)?;
            Ok(i32::from(level))
        })
    })?;
    l.func_wrap(
        M,
        "gpio_write",
        |mut c: Caller<'_, Host>, pin: i32, level: i32| {
            with_guest(&mut c, |_, api| {
                let line = pin_of(api, pin)?;
                lock(&line).write(level != 0).map_err(device_error)?;
                Ok(0)
            })
        },
    )?;
    l.func_wrap(
        M,
        "gpio_watch",
        |mut c: Caller<'_, Host>, pin: i32, edges: i32| {
            with_guest(&mut c, |_, api| {
                let line = pin_of(api, pin)?;
                if !(1..=3).contains(&edges) {
                    return Err(errno::INVALID_ARGUMENT);
                }
                let edges = Edges {
                    rising: edges & 1 != 0,
                    falling: edges & 2 != 0,
                };
                // Watching again replaces the watch: the old one stops first.
                drop(api.watches.remove(&(pin as u32)));
                let guard = lock(&line)
                    .watch(EdgeSink::new(pin as u32, edges, api.edges.clone()))
                    .map_err(device_error)?;
                api.watches.insert(pin as u32, guard);
                Ok(0)
            })
        },
    )?;
    l.func_wrap(M, "gpio_unwatch", |mut c: Caller<'_, Host>, pin: i32| {
        let api = &mut c.data_mut().api;
        match u32::try_from(pin) {
            Ok(p) if api.caps.gpio.contains(&p) => match api.watches.remove(&p) {
                Some(_) => 0,
                None => errno::BAD_HANDLE,
            },
            _ => errno::NOT_PERMITTED,
        }
    })?;
    Ok(())
}

/// One decoded operation: kind and the guest ranges it reads or writes.
#[derive(Debug, Clone, Copy)]
struct Op {
    kind: u32,
    ptr: i32,
    len: i32,
    ptr2: i32,
    len2: i32,
}

const READ: u32 = 0;
const WRITE: u32 = 1;
const TRANSFER: u32 = 2;
const TRANSFER_IN_PLACE: u32 = 3;
const DELAY_NS: u32 = 4;

/// Decodes `n` operations at `ptr` and checks their ranges and sizes; `spi` allows the
/// SPI-only kinds.
fn decode_ops(mem: &[u8], ptr: i32, n: i32, spi: bool) -> Result<Vec<Op>, i32> {
    let n = usize::try_from(n).map_err(|_| errno::INVALID_ARGUMENT)?;
    if n > limits::BUS_OPS {
        return Err(errno::TOO_LARGE);
    }
    let raw = bytes(mem, ptr, (n * 20) as i32)?;
    let mut total = 0usize;
    let mut ops = Vec::with_capacity(n);
    for chunk in raw.as_chunks::<20>().0 {
        let words = chunk.as_chunks::<4>().0;
        let w = |i: usize| u32::from_le_bytes(words[i]);
        let op = Op {
            kind: w(0),
            ptr: w(1) as i32,
            len: w(2) as i32,
            ptr2: w(3) as i32,
            len2: w(4) as i32,
        };
        match op.kind {
            READ | WRITE => total += range(mem.len(), op.ptr, op.len)?.len(),
            TRANSFER if spi => {
                total += range(mem.len(), op.ptr, op.len)?.len();
                total += range(mem.len(), op.ptr2, op.len2)?.len();
            }
            TRANSFER_IN_PLACE if spi => total += range(mem.len(), op.ptr, op.len)?.len(),
            DELAY_NS if spi => {}
            _ => return Err(errno::INVALID_ARGUMENT),
        }
        ops.push(op);
    }
    if total > limits::BUS_BYTES {
        return Err(errno::TOO_LARGE);
    }
    Ok(ops)
}

/// Host copies of each operation's bytes: (read or in-place buffer, transfer's write buffer).
type Scratch = Vec<(Vec<u8>, Vec<u8>)>;

/// Scratch copies of each operation's guest bytes (reads start zeroed).
fn scratch(mem: &[u8], ops: &[Op]) -> Scratch {
    let copy = |p, l| bytes(mem, p, l).map(<[u8]>::to_vec).unwrap_or_default();
    ops.iter()
        .map(|op| match op.kind {
            READ => (vec![0; op.len as u32 as usize], vec![]),
            TRANSFER => (vec![0; op.len as u32 as usize], copy(op.ptr2, op.len2)),
            DELAY_NS => (vec![], vec![]),
            _ => (copy(op.ptr, op.len), vec![]),
        })
        .collect()
}

/// Copies what the device read back into guest memory.
fn copy_back(mem: &mut [u8], ops: &[Op], bufs: &[(Vec<u8>, Vec<u8>)]) {
    for (op, (buf, _)) in ops.iter().zip(bufs) {
        if matches!(op.kind, READ | TRANSFER | TRANSFER_IN_PLACE)
            && let Ok(r) = range(mem.len(), op.ptr, op.len)
        {
            mem[r].copy_from_slice(buf);
        }
    }
}

/// Opens a granted bus by name: the handle (shared per name within the instance).
fn open<T: ?Sized>(
    name: &str,
    granted: &[String],
    open: &mut Vec<(String, crate::devices::Shared<Box<T>>)>,
    find: impl FnOnce() -> Option<crate::devices::Shared<Box<T>>>,
) -> CallResult {
    if !granted.iter().any(|g| g == name) {
        return Err(errno::NOT_PERMITTED);
    }
    if let Some(i) = open.iter().position(|(n, _)| n == name) {
        return Ok(i as i32);
    }
    let dev = find().ok_or(errno::NOT_FOUND)?;
    open.push((name.to_string(), dev));
    Ok(open.len() as i32 - 1)
}

pub(super) fn add_i2c(l: &mut Linker<Host>) -> wasmtime::Result<()> {
    l.func_wrap(
        M,
        "i2c_open",
        |mut c: Caller<'_, Host>, np: i32, nl: i32| {
            with_guest(&mut c, |mem, api| {
                let name = text(mem, np, nl)?;
                let devices = api.services.devices.clone();
                open(name, &api.caps.i2c, &mut api.i2c, || devices.i2c(name))
            })
        },
    )?;
    l.func_wrap_async(
        M,
        "i2c_transaction",
        |mut c: Caller<'_, Host>, (bus, address, ops_ptr, n): (i32, i32, i32, i32)| {
            let prepared = split(&mut c).and_then(|(mem, api)| {
                let (_, dev) = api.i2c.get(bus as u32 as usize).ok_or(errno::BAD_HANDLE)?;
                let address = u8::try_from(address)
                    .ok()
                    .filter(|a| *a < 0x80)
                    .ok_or(errno::INVALID_ARGUMENT)?;
                let ops = decode_ops(mem, ops_ptr, n, false)?;
                let bufs = scratch(mem, &ops);
                Ok((dev.clone(), address, ops, bufs))
            });
            Box::new(async move {
                let (dev, address, ops, bufs) = match prepared {
                    Ok(p) => p,
                    Err(code) => return code,
                };
                transact(&mut c, ops, bufs, move |ops, bufs| {
                    let mut hal: Vec<I2cOp<'_>> = ops
                        .iter()
                        .zip(bufs.iter_mut())
                        .map(|(op, (buf, _))| match op.kind {
                            READ => I2cOp::Read(buf),
                            _ => I2cOp::Write(buf),
                        })
                        .collect();
                    lock(&dev).transaction(address, &mut hal)
                })
                .await
            })
        },
    )?;
    Ok(())
}

pub(super) fn add_spi(l: &mut Linker<Host>) -> wasmtime::Result<()> {
    l.func_wrap(
        M,
        "spi_open",
        |mut c: Caller<'_, Host>, np: i32, nl: i32| {
            with_guest(&mut c, |mem, api| {
                let name = text(mem, np, nl)?;
                let devices = api.services.devices.clone();
                open(name, &api.caps.spi, &mut api.spi, || devices.spi(name))
            })
        },
    )?;
    l.func_wrap_async(
        M,
        "spi_transaction",
        |mut c: Caller<'_, Host>, (dev, ops_ptr, n): (i32, i32, i32)| {
            let prepared = split(&mut c).and_then(|(mem, api)| {
                let (_, dev) = api.spi.get(dev as u32 as usize).ok_or(errno::BAD_HANDLE)?;
                let ops = decode_ops(mem, ops_ptr, n, true)?;
                let delays: u64 = ops
                    .iter()
                    .filter(|o| o.kind == DELAY_NS)
                    .map(|o| u64::from(o.len as u32))
                    .sum();
                if delays > limits::DELAY_NS {
                    return Err(errno::TOO_LARGE);
                }
                let bufs = scratch(mem, &ops);
                Ok((dev.clone(), ops, bufs))
            });
            Box::new(async move {
                let (dev, ops, bufs) = match prepared {
                    Ok(p) => p,
                    Err(code) => return code,
                };
                transact(&mut c, ops, bufs, move |ops, bufs| {
                    let mut hal: Vec<SpiOp<'_, u8>> = ops
                        .iter()
                        .zip(bufs.iter_mut())
                        .map(|(op, (a, b))| match op.kind {
                            READ => SpiOp::Read(a),
                            WRITE => SpiOp::Write(a),
                            TRANSFER => SpiOp::Transfer(a, b),
                            TRANSFER_IN_PLACE => SpiOp::TransferInPlace(a),
                            _ => SpiOp::DelayNs(op.len as u32),
                        })
                        .collect();
                    lock(&dev).transaction(&mut hal)
                })
                .await
            })
        },
    )?;
    Ok(())
}

/// Runs a bus transaction on tokio's blocking pool (a slow bus, clock stretching or an SPI
/// delay must not stall the agent's executor), then copies what the device read into guest
/// memory, which cannot have changed: the instance was waiting in this call.
async fn transact(
    c: &mut Caller<'_, Host>,
    ops: Vec<Op>,
    mut bufs: Scratch,
    run: impl FnOnce(&[Op], &mut Scratch) -> Result<(), DeviceError> + Send + 'static,
) -> i32 {
    let done = tokio::task::spawn_blocking(move || {
        let r = run(&ops, &mut bufs);
        (r, ops, bufs)
    })
    .await;
    match done {
        Ok((Ok(()), ops, bufs)) => match split(c) {
            Ok((mem, _)) => {
                copy_back(mem, &ops, &bufs);
                0
            }
            Err(code) => code,
        },
        Ok((Err(e), _, _)) => device_error(e),
        Err(_) => errno::IO,
    }
}
