//! Host functions every module has: log, clocks, timers, config, delay, exit.

use alloc::string::String;

use wasmtime::{Caller, Func, Store};

use super::{Host, split, with_guest};
use crate::abi::{errno, limits};
use crate::guest::{bytes, copy_out, text};
use crate::outcome::Exit;
use crate::platform::{LogLevel, Platform};
use crate::workload::Workload;

pub(super) fn func<P: Platform + 'static>(store: &mut Store<Host<P>>, name: &str) -> Option<Func> {
    let s = &mut *store;
    Some(match name {
        "log" => Func::wrap(
            s,
            |mut c: Caller<'_, Host<P>>, level: i32, ptr: i32, len: i32| {
                // A range outside memory logs nothing (the function cannot return an error).
                let Ok((mem, host)) = split(&mut c) else {
                    return;
                };
                let Ok(line) = bytes(mem, ptr, len) else {
                    return;
                };
                let line = String::from_utf8_lossy(line);
                let level = LogLevel::from_abi(level);
                host.platform.log(&host.api.workload.name, level, &line);
            },
        ),
        "clock_monotonic_ns" => Func::wrap(s, |mut c: Caller<'_, Host<P>>| -> i64 {
            let h = c.data_mut();
            let origin = h.api.origin_ms.saturating_mul(1_000_000);
            let ns = h.platform.now_ns().saturating_sub(origin);
            i64::try_from(ns).unwrap_or(i64::MAX)
        }),
        "clock_wall_ns" => Func::wrap(s, |mut c: Caller<'_, Host<P>>| -> i64 {
            c.data_mut().platform.wall_ns().unwrap_or(0)
        }),
        "timer_start" => Func::wrap(s, |mut c: Caller<'_, Host<P>>, after: i64, period: i64| {
            let h = c.data_mut();
            let now = h.platform.now_ms();
            h.api.timers.start(now, after, period)
        }),
        "timer_cancel" => Func::wrap(s, |mut c: Caller<'_, Host<P>>, handle: i32| {
            c.data_mut().api.timers.cancel(handle)
        }),
        "config_get" => Func::wrap(
            s,
            |mut c: Caller<'_, Host<P>>, kp: i32, kl: i32, bp: i32, bl: i32| {
                with_guest(&mut c, |mem, host| {
                    let key = text(mem, kp, kl)?;
                    let value = config_value(&host.api.workload, key).ok_or(errno::NOT_FOUND)?;
                    copy_out(mem, bp, bl, value.as_bytes())
                })
            },
        ),
        "delay_ns" => Func::wrap(s, |mut c: Caller<'_, Host<P>>, ns: i64| {
            // Negative: no wait; capped at the ABI's 1 s per call.
            if ns > 0 {
                let ns = (ns as u64).min(limits::DELAY_NS) as u32;
                c.data_mut().platform.delay_ns(ns);
            }
        }),
        "exit" => Func::wrap(
            s,
            |_: Caller<'_, Host<P>>, code: i32| -> wasmtime::Result<()> {
                Err(wasmtime::Error::new(Exit(code)))
            },
        ),
        _ => return None,
    })
}

/// `spec.config[key]`, or one of the reserved `wasmfleet.*` keys.
fn config_value<'a>(w: &'a Workload, key: &str) -> Option<&'a str> {
    match key {
        "wasmfleet.node" => Some(&w.node),
        "wasmfleet.workload" => Some(&w.name),
        "wasmfleet.deployment" => Some(&w.deployment),
        "wasmfleet.namespace" => Some(&w.namespace),
        _ => w
            .config
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.as_str()),
    }
}
