//! The event loop of a host API module (`modules/ABI.md`): `on_start`, then one handler call
//! at a time for each due timer, application message and GPIO edge, until the module holds
//! nothing to wait for (success), calls `exit`, traps, or is asked to stop (`on_stop`, bounded
//! by [`STOP_GRACE`]). Handlers never run concurrently and never from another thread: the
//! same model a single-threaded microcontroller runs.

use wasmtime::{Instance, Store, TypedFunc};

use super::host::EventQueues;
use super::instance::{Host, STOP_GRACE, StopSignal, map_error};
use wasmfleet_node::reconcile::Exit;

/// The handlers a module exports (all but `on_start` optional).
struct Handlers {
    on_timer: Option<TypedFunc<i32, ()>>,
    on_message: Option<TypedFunc<(i32, i32, i32), ()>>,
    on_gpio: Option<TypedFunc<(i32, i32), ()>>,
    on_stop: Option<TypedFunc<(), ()>>,
}

/// Runs the module's events to the end.
pub(super) async fn run(
    store: &mut Store<Host>,
    instance: &Instance,
    mut queues: EventQueues,
    mut stop: StopSignal,
) -> Exit {
    let Some(memory) = instance.get_memory(&mut *store, "memory") else {
        return Exit::failure(None, "module exports no memory named `memory`");
    };
    store.data_mut().api.memory = Some(memory);
    let on_start = match instance.get_typed_func::<(), ()>(&mut *store, "on_start") {
        Ok(f) => f,
        Err(e) => return Exit::failure(None, format!("bad `on_start` export: {e:#}")),
    };
    let handlers = match handlers(store, instance) {
        Ok(h) => h,
        Err(e) => return Exit::failure(None, e),
    };
    let ended = tokio::select! {
        r = on_start.call_async(&mut *store, ()) => r,
        // Cut off mid-call, the module may be in any state: no `on_stop` on top of it.
        () = stop.wait() => return Exit::success(),
    };
    if let Err(e) = ended {
        return map_error(&e, "on_start failed");
    }
    loop {
        let api = &store.data().api;
        if !api.has_interest() && queues.messages.is_empty() && queues.edges.is_empty() {
            return Exit::success();
        }
        let next_timer = api.timers.next_due().map(|d| api.instant(d));
        let call = tokio::select! {
            biased;
            () = stop.wait() => return stop_now(store, &handlers).await,
            () = sleep_until(next_timer) => {
                let now = store.data().api.now();
                let Some(timer) = store.data_mut().api.timers.pop_due(now) else { continue };
                match &handlers.on_timer {
                    Some(f) => f.call_async(&mut *store, timer).await,
                    None => Ok(()),
                }
            }
            Some(message) = queues.messages.recv() => {
                let args = (
                    message.subscription,
                    message.topic.len() as i32,
                    message.payload.len() as i32,
                );
                // Unsubscribed meanwhile: the message is not for the module any more.
                if !store.data().api.subscriptions.contains_key(&message.subscription) {
                    continue;
                }
                store.data_mut().api.current = Some(message);
                let r = match &handlers.on_message {
                    Some(f) => f.call_async(&mut *store, args).await,
                    None => Ok(()),
                };
                store.data_mut().api.current = None;
                r
            }
            Some((pin, level)) = queues.edges.recv() => {
                if !store.data().api.watches.contains_key(&pin) {
                    continue;
                }
                match &handlers.on_gpio {
                    Some(f) => f.call_async(&mut *store, (pin as i32, i32::from(level))).await,
                    None => Ok(()),
                }
            }
        };
        if let Err(e) = call {
            return map_error(&e, "handler failed");
        }
    }
}

fn handlers(store: &mut Store<Host>, instance: &Instance) -> Result<Handlers, String> {
    // An export of the right name but the wrong type is a mistake worth refusing; a missing
    // one means the module does not want those events.
    fn get<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
        store: &mut Store<Host>,
        instance: &Instance,
        name: &str,
    ) -> Result<Option<TypedFunc<P, R>>, String> {
        if instance.get_export(&mut *store, name).is_none() {
            return Ok(None);
        }
        instance
            .get_typed_func::<P, R>(&mut *store, name)
            .map(Some)
            .map_err(|e| format!("bad `{name}` export: {e:#}"))
    }
    Ok(Handlers {
        on_timer: get(store, instance, "on_timer")?,
        on_message: get(store, instance, "on_message")?,
        on_gpio: get(store, instance, "on_gpio")?,
        on_stop: get(store, instance, "on_stop")?,
    })
}

/// Calls `on_stop` (if exported) with [`STOP_GRACE`] to finish; the instance ends either way.
async fn stop_now(store: &mut Store<Host>, handlers: &Handlers) -> Exit {
    let Some(on_stop) = &handlers.on_stop else {
        return Exit::success();
    };
    match tokio::time::timeout(STOP_GRACE, on_stop.call_async(&mut *store, ())).await {
        Ok(Ok(())) | Err(_) => Exit::success(),
        Ok(Err(e)) => map_error(&e, "on_stop failed"),
    }
}

async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
