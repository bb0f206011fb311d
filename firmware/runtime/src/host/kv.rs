//! Host functions of capability `kv`, over the board's [`KvStore`]: one store per deployment,
//! keys of 1 to 128 bytes of UTF-8, values up to 4 KiB, `capabilities.kv` bounding keys plus
//! values. The quota is enforced here, so a board's store only persists.

use alloc::vec;

use wasmtime::{Caller, Func, Store};

use super::{Host, with_guest};
use crate::abi::{errno, limits};
use crate::guest::{CallResult, bytes, range, text};
use crate::platform::{KvError, KvStore, Platform};

/// A key copied out of guest memory (at most [`limits::KV_KEY`] bytes, on the stack).
type Key = heapless::Vec<u8, { limits::KV_KEY }>;

pub(super) fn func<P: Platform + 'static>(store: &mut Store<Host<P>>, name: &str) -> Option<Func> {
    let s = &mut *store;
    Some(match name {
        "kv_get" => Func::wrap(
            s,
            |mut c: Caller<'_, Host<P>>, kp: i32, kl: i32, bp: i32, bl: i32| {
                with_guest(&mut c, |mem, host| {
                    let key = Key::from_slice(key(mem, kp, kl)?).map_err(|_| errno::TOO_LARGE)?;
                    let kv = host.platform.kv().ok_or(errno::IO)?;
                    let store = &host.api.workload.deployment;
                    let found = match range(mem.len(), bp, bl) {
                        Ok(dest) => kv.get(store, &key, &mut mem[dest]),
                        // As on Linux, an absent key is NOT_FOUND whatever the buffer.
                        Err(code) => match kv.get(store, &key, &mut []) {
                            Ok(Some(_)) => return Err(code),
                            other => other,
                        },
                    };
                    match found.map_err(kv_error)? {
                        Some(len) => i32::try_from(len).map_err(|_| errno::TOO_LARGE),
                        None => Err(errno::NOT_FOUND),
                    }
                })
            },
        ),
        "kv_set" => Func::wrap(
            s,
            |mut c: Caller<'_, Host<P>>, kp: i32, kl: i32, vp: i32, vl: i32| {
                with_guest(&mut c, |mem, host| {
                    let key = key(mem, kp, kl)?;
                    let value = bytes(mem, vp, vl)?;
                    if value.len() > limits::KV_VALUE {
                        return Err(errno::TOO_LARGE);
                    }
                    let quota = host.api.workload.capabilities.kv_bytes;
                    let kv = host.platform.kv().ok_or(errno::IO)?;
                    set(kv, &host.api.workload.deployment, key, value, quota)
                })
            },
        ),
        "kv_delete" => Func::wrap(s, |mut c: Caller<'_, Host<P>>, kp: i32, kl: i32| {
            with_guest(&mut c, |mem, host| {
                let key = key(mem, kp, kl)?;
                let kv = host.platform.kv().ok_or(errno::IO)?;
                match kv
                    .delete(&host.api.workload.deployment, key)
                    .map_err(kv_error)?
                {
                    true => Ok(0),
                    false => Err(errno::NOT_FOUND),
                }
            })
        }),
        _ => return None,
    })
}

/// Sets `key` if `store` stays within `quota` bytes (or does not grow), as the Linux agent's
/// store does. An unchanged value is not written again: flash wears.
fn set(kv: &mut dyn KvStore, store: &str, key: &[u8], value: &[u8], quota: u64) -> CallResult {
    let old_len = kv.get(store, key, &mut []).map_err(kv_error)?;
    if old_len == Some(value.len()) {
        let mut old = vec![0; value.len()];
        if kv.get(store, key, &mut old).map_err(kv_error)?.is_some() && old == value {
            return Ok(0);
        }
    }
    let old = old_len.map_or(0, |v| key.len() + v) as u64;
    let new = (key.len() + value.len()) as u64;
    if new > old {
        let used = kv.used(store).map_err(kv_error)?;
        if used.saturating_sub(old).saturating_add(new) > quota {
            return Err(errno::NO_SPACE);
        }
    }
    kv.set(store, key, value).map_err(kv_error)?;
    Ok(0)
}

/// The guest's code for a failed storage operation.
fn kv_error(e: KvError) -> i32 {
    match e {
        KvError::NoSpace => errno::NO_SPACE,
        KvError::Io => errno::IO,
    }
}

/// A KV key: 1 to 128 bytes of UTF-8.
fn key(mem: &[u8], ptr: i32, len: i32) -> Result<&[u8], i32> {
    let k = text(mem, ptr, len)?;
    match k.len() {
        0 => Err(errno::INVALID_ARGUMENT),
        n if n > limits::KV_KEY => Err(errno::TOO_LARGE),
        _ => Ok(k.as_bytes()),
    }
}
