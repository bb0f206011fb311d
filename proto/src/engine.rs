//! Which precompiled artifacts a node loads: the engine settings both sides of an artifact must
//! share. A node announces [`crate::EngineProfile::settings`] as the [`fingerprint`] of its
//! settings' description; the hub compiles for it only when its own description for that
//! target hashes the same. The microcontroller settings live here, in the contract, because the
//! hub (std, Cranelift) and the firmware (`no_std`, Pulley) are built in different workspaces
//! and must not drift apart.

/// The Pulley target microcontrollers run: 32-bit pointers, little-endian.
pub const PULLEY32: &str = "pulley32";

/// The wasmtime settings of microcontroller firmware, as compiled into its artifacts: no
/// virtual memory (no reservation, no guard pages, no copy-on-write images, explicit bounds
/// checks instead of signals), no GC or async, custom page sizes (so a module can ask for less
/// than 64 KiB), no component model (core modules only; the firmware is built without it), and
/// fuel instead of epochs (no 64-bit atomics on these cores).
pub const MCU_SETTINGS: &str = "mcu-v1 pulley32 consume_fuel gc_support=false component_model=false memory_init_cow=false concurrency_support=false signals_based_traps=false memory_reservation=0 memory_guard_size=0 memory_reservation_for_growth=0 wasm_custom_page_sizes";

/// Stable fingerprint (FNV-1a, 64 bits) of a settings description: the same on 32- and 64-bit
/// builds, unlike Rust's `Hash`.
pub const fn fingerprint(description: &str) -> u64 {
    let bytes = description.as_bytes();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    h
}

/// [`fingerprint`] of [`MCU_SETTINGS`].
pub const MCU_SETTINGS_FINGERPRINT: u64 = fingerprint(MCU_SETTINGS);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_fnv1a_and_tell_settings_apart() {
        // FNV-1a test vectors.
        assert_eq!(fingerprint(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fingerprint("a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(MCU_SETTINGS_FINGERPRINT, fingerprint("mcu-v1"));
    }
}
