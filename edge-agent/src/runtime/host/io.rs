//! Host API capabilities `kv`, `publish` and `subscribe`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmfleet_common::abi::{errno, limits};
use wasmfleet_proto::topic::{check_app_filter, check_app_topic, filter_covers, filter_matches};
use wasmtime::{Caller, Linker};

use super::guest::{bytes, copy_out, ret, text};
use super::{Api, Host, M, PUBLISH_BURST, PUBLISH_RATE, split, with_guest};
use crate::kv::{Kv, KvError};

pub(super) fn add_kv(l: &mut Linker<Host>) -> wasmtime::Result<()> {
    l.func_wrap_async(
        M,
        "kv_get",
        |mut c: Caller<'_, Host>, (kp, kl, bp, bl): (i32, i32, i32, i32)| {
            let args = split(&mut c).and_then(|(mem, api)| store_and_key(mem, api, kp, kl));
            Box::new(async move {
                let value = match args {
                    Ok((kv, key)) => on_store(kv, move |kv| kv.get(&key).map(<[u8]>::to_vec)).await,
                    Err(code) => return code,
                };
                match value {
                    Ok(Some(v)) => {
                        ret(split(&mut c).and_then(|(mem, _)| copy_out(mem, bp, bl, &v)))
                    }
                    Ok(None) => errno::NOT_FOUND,
                    Err(code) => code,
                }
            })
        },
    )?;
    l.func_wrap_async(
        M,
        "kv_set",
        |mut c: Caller<'_, Host>, (kp, kl, vp, vl): (i32, i32, i32, i32)| {
            let args = split(&mut c).and_then(|(mem, api)| {
                let (kv, key) = store_and_key(mem, api, kp, kl)?;
                let value = bytes(mem, vp, vl)?.to_vec();
                if value.len() > limits::KV_VALUE {
                    return Err(errno::TOO_LARGE);
                }
                Ok((kv, key, value, api.caps.kv_bytes))
            });
            Box::new(async move {
                let (kv, key, value, quota) = match args {
                    Ok(a) => a,
                    Err(code) => return code,
                };
                match on_store(kv, move |kv| kv.set(&key, &value, quota)).await {
                    Ok(Ok(())) => 0,
                    Ok(Err(e)) => kv_error("write", &e),
                    Err(code) => code,
                }
            })
        },
    )?;
    l.func_wrap_async(
        M,
        "kv_delete",
        |mut c: Caller<'_, Host>, (kp, kl): (i32, i32)| {
            let args = split(&mut c).and_then(|(mem, api)| store_and_key(mem, api, kp, kl));
            Box::new(async move {
                let (kv, key) = match args {
                    Ok(a) => a,
                    Err(code) => return code,
                };
                match on_store(kv, move |kv| kv.delete(&key)).await {
                    Ok(Ok(true)) => 0,
                    Ok(Ok(false)) => errno::NOT_FOUND,
                    Ok(Err(e)) => kv_error("delete", &e),
                    Err(code) => code,
                }
            })
        },
    )?;
    Ok(())
}

/// The instance's store (`NOT_PERMITTED` without `capabilities.kv`) and the call's key.
fn store_and_key(
    mem: &[u8],
    api: &Api,
    ptr: i32,
    len: i32,
) -> Result<(Arc<Mutex<Kv>>, Vec<u8>), i32> {
    let key = key(mem, ptr, len)?.to_vec();
    Ok((api.kv.clone().ok_or(errno::NOT_PERMITTED)?, key))
}

/// Runs `f` on the locked store on tokio's blocking pool: a write syncs to disk, and a
/// replica's write may hold the store meanwhile, so neither may stall the agent's executor.
async fn on_store<T: Send + 'static>(
    kv: Arc<Mutex<Kv>>,
    f: impl FnOnce(&mut Kv) -> T + Send + 'static,
) -> Result<T, i32> {
    tokio::task::spawn_blocking(move || f(&mut crate::devices::lock(&kv)))
        .await
        .map_err(|_| errno::IO)
}

/// The guest's code for a failed KV `what` (write, delete).
fn kv_error(what: &str, e: &KvError) -> i32 {
    match e {
        KvError::NoSpace { .. } => errno::NO_SPACE,
        e => {
            tracing::warn!(error = %e, "KV {what} failed");
            errno::IO
        }
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

pub(super) fn add_publish(l: &mut Linker<Host>) -> wasmtime::Result<()> {
    l.func_wrap(
        M,
        "publish",
        |mut c: Caller<'_, Host>, tp: i32, tl: i32, pp: i32, pl: i32| {
            with_guest(&mut c, |mem, api| {
                let topic = text(mem, tp, tl)?;
                check_app_topic(topic).map_err(|_| errno::INVALID_ARGUMENT)?;
                if !api.caps.publish.iter().any(|g| filter_matches(g, topic)) {
                    return Err(errno::NOT_PERMITTED);
                }
                let payload = bytes(mem, pp, pl)?;
                if payload.len() > limits::PAYLOAD {
                    return Err(errno::TOO_LARGE);
                }
                take_publish_token(api)?;
                match api.services.apps.publish(&api.namespace, topic, payload) {
                    true => Ok(0),
                    false => Err(errno::BUSY),
                }
            })
        },
    )?;
    Ok(())
}

/// Token bucket: [`PUBLISH_RATE`] per second, [`PUBLISH_BURST`] at once.
fn take_publish_token(api: &mut Api) -> Result<(), i32> {
    let now = Instant::now();
    let elapsed = now.duration_since(api.publish_refill).as_secs_f64();
    api.publish_refill = now;
    api.publish_tokens = (api.publish_tokens + elapsed * PUBLISH_RATE).min(PUBLISH_BURST);
    if api.publish_tokens < 1.0 {
        return Err(errno::BUSY);
    }
    api.publish_tokens -= 1.0;
    Ok(())
}

pub(super) fn add_subscribe(l: &mut Linker<Host>) -> wasmtime::Result<()> {
    l.func_wrap(
        M,
        "subscribe",
        |mut c: Caller<'_, Host>, fp: i32, fl: i32| {
            with_guest(&mut c, |mem, api| {
                let filter = text(mem, fp, fl)?;
                check_app_filter(filter).map_err(|_| errno::INVALID_ARGUMENT)?;
                if !api.caps.subscribe.iter().any(|g| filter_covers(g, filter)) {
                    return Err(errno::NOT_PERMITTED);
                }
                if api.subscriptions.len() >= limits::SUBSCRIPTIONS {
                    return Err(errno::TOO_MANY);
                }
                let handle = api.next_subscription;
                api.next_subscription += 1;
                api.subscriptions.insert(handle, filter.to_string());
                let tx = api.messages.clone();
                api.services
                    .apps
                    .subscribe(api.instance, handle, &api.namespace, filter, tx);
                Ok(handle)
            })
        },
    )?;
    l.func_wrap(M, "unsubscribe", |mut c: Caller<'_, Host>, h: i32| {
        let api = &mut c.data_mut().api;
        match api.subscriptions.remove(&h) {
            Some(_) => {
                api.services.apps.unsubscribe(api.instance, h);
                0
            }
            None => errno::BAD_HANDLE,
        }
    })?;
    l.func_wrap(
        M,
        "message_topic",
        |mut c: Caller<'_, Host>, bp: i32, bl: i32| {
            with_guest(&mut c, |mem, api| {
                let m = api.current.as_ref().ok_or(errno::BAD_HANDLE)?;
                copy_out(mem, bp, bl, m.topic.as_bytes())
            })
        },
    )?;
    l.func_wrap(
        M,
        "message_payload",
        |mut c: Caller<'_, Host>, bp: i32, bl: i32| {
            with_guest(&mut c, |mem, api| {
                let m = api.current.as_ref().ok_or(errno::BAD_HANDLE)?;
                copy_out(mem, bp, bl, &m.payload)
            })
        },
    )?;
    Ok(())
}
