//! The platform functions wasmtime's `no_std` build calls: its thread-local pointers. A
//! microcontroller node runs wasm on one thread, so each is a static cell. Hosted builds get
//! them from `std` instead.
//!
//! wasmtime reads slot 0 (the running store's state) on every call into and out of wasm and
//! slot 1 (component-model async state, unused here). Never run wasm from an interrupt
//! handler: it would share these cells with the interrupted call.

use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, Ordering};

static SLOTS: [AtomicPtr<u8>; 2] = [AtomicPtr::new(null_mut()), AtomicPtr::new(null_mut())];

/// wasmtime's TLS getter (`wasmtime_tls_get` in its custom-platform C API).
#[unsafe(no_mangle)]
pub extern "C" fn wasmtime_tls_get(slot: usize) -> *mut u8 {
    SLOTS
        .get(slot)
        .map_or(null_mut(), |s| s.load(Ordering::Relaxed))
}

/// wasmtime's TLS setter (`wasmtime_tls_set` in its custom-platform C API).
#[unsafe(no_mangle)]
pub extern "C" fn wasmtime_tls_set(slot: usize, ptr: *mut u8) {
    if let Some(s) = SLOTS.get(slot) {
        s.store(ptr, Ordering::Relaxed);
    }
}
