//! Raw imports of the `wasmfleet_v1` host module, exactly as `modules/ABI.md` lists them.
//!
//! Everything here is `unsafe`: pointers must lie inside this module's memory and the
//! return values are raw (`>= 0` result, `< 0` error code). Use the safe wrappers in the
//! other modules unless you need something they do not offer.

#[link(wasm_import_module = "wasmfleet_v1")]
unsafe extern "C" {
    // Always available: log, clocks, timers, config, delay, exit.
    /// One log line. Levels: 0 error, 1 warn, 2 info, 3 debug, 4 trace.
    pub fn log(level: i32, ptr: i32, len: i32);
    /// Nanoseconds since an arbitrary start; never decreases.
    pub fn clock_monotonic_ns() -> i64;
    /// Nanoseconds since the Unix epoch (UTC); may jump.
    pub fn clock_wall_ns() -> i64;
    /// A timer firing `on_timer(handle)` after `after_ms`, then every `period_ms` (0: once).
    pub fn timer_start(after_ms: i64, period_ms: i64) -> i32;
    /// 0, or `BAD_HANDLE`.
    pub fn timer_cancel(timer: i32) -> i32;
    /// Value of `spec.config[key]` (full length; copies what fits), or `NOT_FOUND`.
    pub fn config_get(key_ptr: i32, key_len: i32, buf_ptr: i32, buf_len: i32) -> i32;
    /// Pauses this instance for at least `ns` (at most 1 s per call).
    pub fn delay_ns(ns: i64);
    /// Ends the instance (0 success). Does not return.
    pub fn exit(code: i32);

    // kv
    /// Value length (copies what fits), or `NOT_FOUND`.
    pub fn kv_get(key_ptr: i32, key_len: i32, buf_ptr: i32, buf_len: i32) -> i32;
    /// 0, `NO_SPACE`, `TOO_LARGE` or `IO`. On disk when it returns 0.
    pub fn kv_set(key_ptr: i32, key_len: i32, val_ptr: i32, val_len: i32) -> i32;
    /// 0 or `NOT_FOUND`.
    pub fn kv_delete(key_ptr: i32, key_len: i32) -> i32;

    // publish and subscribe
    /// 0, `NOT_PERMITTED`, `INVALID_ARGUMENT`, `TOO_LARGE` or `BUSY`. QoS 1.
    pub fn publish(topic_ptr: i32, topic_len: i32, payload_ptr: i32, payload_len: i32) -> i32;
    /// A subscription handle, `NOT_PERMITTED` or `TOO_MANY`.
    pub fn subscribe(filter_ptr: i32, filter_len: i32) -> i32;
    /// 0 or `BAD_HANDLE`.
    pub fn unsubscribe(subscription: i32) -> i32;
    /// Inside `on_message` only: the topic's length (copies what fits).
    pub fn message_topic(buf_ptr: i32, buf_len: i32) -> i32;
    /// Inside `on_message` only: the payload's length (copies what fits).
    pub fn message_payload(buf_ptr: i32, buf_len: i32) -> i32;

    // gpio
    /// 0 or 1.
    pub fn gpio_read(pin: i32) -> i32;
    /// 0. Level 0 is low, anything else high; the pin becomes an output.
    pub fn gpio_write(pin: i32, level: i32) -> i32;
    /// 0: `on_gpio(pin, level)` on each edge (1 rising, 2 falling, 3 both).
    pub fn gpio_watch(pin: i32, edges: i32) -> i32;
    /// 0 or `BAD_HANDLE`.
    pub fn gpio_unwatch(pin: i32) -> i32;

    // i2c and spi
    /// A bus handle, `NOT_PERMITTED` or `NOT_FOUND`.
    pub fn i2c_open(name_ptr: i32, name_len: i32) -> i32;
    /// Runs `n_ops` 20-byte ops at `ops_ptr` as one transaction (7-bit address).
    pub fn i2c_transaction(bus: i32, address: i32, ops_ptr: i32, n_ops: i32) -> i32;
    /// A device handle, `NOT_PERMITTED` or `NOT_FOUND`.
    pub fn spi_open(name_ptr: i32, name_len: i32) -> i32;
    /// Runs `n_ops` 20-byte ops at `ops_ptr` with chip select held.
    pub fn spi_transaction(device: i32, ops_ptr: i32, n_ops: i32) -> i32;
}

/// The ABI's `i32` form of a guest pointer. Lossless on wasm32, where pointers are 32 bits.
#[inline]
pub(crate) fn ptr<T>(p: *const T) -> i32 {
    p as usize as u32 as i32
}

/// The ABI's `i32` form of a length. Lossless on wasm32: no slice is longer than `i32::MAX`.
#[inline]
pub(crate) fn len(n: usize) -> i32 {
    n as u32 as i32
}

/// `(ptr, len)` of a byte slice, as the ABI passes strings and buffers.
#[inline]
pub(crate) fn slice(s: &[u8]) -> (i32, i32) {
    (ptr(s.as_ptr()), len(s.len()))
}

/// `(ptr, len)` of a buffer the host writes into.
#[inline]
pub(crate) fn slice_mut(s: &mut [u8]) -> (i32, i32) {
    (ptr(s.as_mut_ptr()), len(s.len()))
}
