//! Host functions of capability `gpio`, over the board's pins. Watched edges come back
//! through [`crate::Instance::deliver_gpio`]; the instance keeps which pins it watches.

use wasmtime::{Caller, Func, Store};

use super::{Host, with_guest};
use crate::abi::errno;
use crate::platform::{DeviceError, Edges, Platform};

fn device_error(e: DeviceError) -> i32 {
    match e {
        DeviceError::NotFound => errno::NOT_FOUND,
        DeviceError::Unsupported => errno::UNSUPPORTED,
        DeviceError::Io => errno::IO,
    }
}

/// The pin number of a granted pin the node has.
fn pin_of<P: Platform>(host: &mut Host<P>, pin: i32) -> Result<u32, i32> {
    let pin = u32::try_from(pin).map_err(|_| errno::INVALID_ARGUMENT)?;
    if !host.api.workload.capabilities.gpio.contains(&pin) {
        return Err(errno::NOT_PERMITTED);
    }
    match host.platform.has_gpio(pin) {
        true => Ok(pin),
        false => Err(errno::NOT_FOUND),
    }
}

pub(super) fn func<P: Platform + 'static>(store: &mut Store<Host<P>>, name: &str) -> Option<Func> {
    let s = &mut *store;
    Some(match name {
        "gpio_read" => Func::wrap(s, |mut c: Caller<'_, Host<P>>, pin: i32| {
            with_guest(&mut c, |_, host| {
                let pin = pin_of(host, pin)?;
                let level = host.platform.gpio_read(pin).map_err(device_error)?;
                Ok(i32::from(level))
            })
        }),
        "gpio_write" => Func::wrap(s, |mut c: Caller<'_, Host<P>>, pin: i32, level: i32| {
            with_guest(&mut c, |_, host| {
                let pin = pin_of(host, pin)?;
                host.platform
                    .gpio_write(pin, level != 0)
                    .map_err(device_error)?;
                Ok(0)
            })
        }),
        "gpio_watch" => Func::wrap(s, |mut c: Caller<'_, Host<P>>, pin: i32, edges: i32| {
            with_guest(&mut c, |_, host| {
                let pin = pin_of(host, pin)?;
                let edges = Edges::from_abi(edges).ok_or(errno::INVALID_ARGUMENT)?;
                // Watching again replaces the watch: the old one stops first.
                let watches = &mut host.api.watches;
                if let Some(i) = watches.iter().position(|(p, _)| *p == pin) {
                    watches.remove(i);
                    host.platform.gpio_unwatch(pin);
                }
                host.platform.gpio_watch(pin, edges).map_err(device_error)?;
                host.api.watches.push((pin, edges));
                Ok(0)
            })
        }),
        "gpio_unwatch" => Func::wrap(s, |mut c: Caller<'_, Host<P>>, pin: i32| {
            let host = c.data_mut();
            match u32::try_from(pin) {
                Ok(p) if host.api.workload.capabilities.gpio.contains(&p) => {
                    let watches = &mut host.api.watches;
                    match watches.iter().position(|(w, _)| *w == p) {
                        Some(i) => {
                            watches.remove(i);
                            host.platform.gpio_unwatch(p);
                            0
                        }
                        None => errno::BAD_HANDLE,
                    }
                }
                _ => errno::NOT_PERMITTED,
            }
        }),
        _ => return None,
    })
}
